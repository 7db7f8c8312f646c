"""Batching dataset items, with a clear error when images of one batch cannot be stacked."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import default_collate

from ganzoo.errors import DataError


def collate_items(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` for ``{"A", "B", "A_path", "B_path"}`` items, checking sizes first.

    Every ``A`` and ``B`` of a batch must share one height and width: the networks see A and B
    side by side (pix2pix's D on (A, B), CycleGAN's D on fakes from A beside real B). Sizes differ
    when images of different sizes meet preprocess ``none`` or ``scale_width``; the error names
    the two files instead of torch's "stack expects each tensor to be equal size".
    """
    first = items[0]
    size = tuple(first["A"].shape[-2:])
    for item in items:
        for side in ("A", "B"):
            tensor = item.get(side)
            if tensor is not None and tuple(tensor.shape[-2:]) != size:
                h, w = tensor.shape[-2:]
                raise DataError(
                    f"{item.get(f'{side}_path', '<item>')} becomes {w}x{h} after preprocessing, but "
                    f"{first.get('A_path', '<item>')} becomes {size[1]}x{size[0]}; one batch (and an A with its B) "
                    "needs one size",
                    hint="use data.preprocess resize_and_crop or crop (fixed crop_size), or resize the images")
    return default_collate(list(items))
