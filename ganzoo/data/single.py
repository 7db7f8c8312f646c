"""One folder of images without targets, for running a trained generator on new inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganzoo.data.images import list_images, read_image, require_folder
from ganzoo.data.transforms import PreprocessedDataset, to_tensor
from ganzoo.registry import register


@register("dataset", "single")
class SingleDataset(PreprocessedDataset):
    """Images of one folder (ROOT, or ROOT/<split> when given), as network inputs without targets.

    Args:
        root: the image folder (or its parent, with ``split``).
        split: optional sub-folder of ``root`` to read; ``None`` reads ``root`` itself, the way the
            official ``single`` dataset reads ``--dataroot``.
        direction: accepted so a recipe can switch datasets; a single folder has nothing to swap.
        load_size, crop_size, preprocess, flip: see :mod:`ganzoo.data.transforms`.
        input_nc: channels the images are loaded with (1 or 3); ``output_nc`` is only checked.
        seed: seeds the per-item crops and flips (with the epoch and the index).
        max_items: keep only the first N files (sorted by name).
        cache: keep every item in memory after its first load (only when items never change: no
            random crop or flip).
        augment: ``data.augment`` (:class:`~ganzoo.data.transforms.Augment`): random resized crop, rotation
            and colour jitter after the preprocessing; null: none.

    Items are ``{"A": Tensor, "A_path": str}``: there is no ``B``.
    """

    def __init__(self, root: str | Path, split: str | None = None, direction: str = "AtoB", load_size: int = 286,
                 crop_size: int = 256, preprocess: str = "resize_and_crop", flip: bool = True, input_nc: int = 3,
                 output_nc: int = 3, seed: int = 0, max_items: int | None = None,
                 cache: bool = False, augment: dict[str, Any] | None = None) -> None:
        super().__init__(root, split, direction, load_size, crop_size, preprocess, flip, input_nc, output_nc,
                         seed, max_items, cache, augment)
        self.check_cache()
        folder = self.root / split if split else self.root
        self.folder = require_folder(folder, root=self.root, what="input images")
        self.paths = list_images(self.folder, max_items)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.paths[index]
        image = read_image(path)
        generator = self.generator(index)
        image = self.preprocess.apply(image, self.preprocess.sample(*image.size, generator), path=path)
        image = self.augment.apply(image, self.augment.sample(generator), colour=self.augment.colours("A"))
        return {"A": to_tensor(image, self.input_nc), "A_path": str(path)}
