"""Two unpaired image folders: ``ROOT/<split>A`` and ``ROOT/<split>B`` (CycleGAN)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganzoo.data.images import list_images, read_image, require_folder
from ganzoo.data.transforms import PreprocessedDataset, random_int, to_tensor
from ganzoo.registry import register


@register("dataset", "unaligned")
class UnalignedDataset(PreprocessedDataset):
    """Unpaired images from ROOT/<split>A and ROOT/<split>B (CycleGAN); each A meets a random B.

    Args:
        root: dataset folder holding ``trainA/``, ``trainB/``, ``testA/`` ...
        split: folder prefix (the official ``--phase``): reads ``<split>A`` and ``<split>B``.
        direction: ``BtoA`` makes the ``<split>B`` images the network input ``A``.
        load_size, crop_size, preprocess, flip: see :mod:`ganzoo.data.transforms`; A and B are
            cropped and flipped independently.
        input_nc, output_nc: channels of the network input ``A`` and target ``B`` (1 or 3).
        seed: seeds the per-item crops, flips and the choice of B (with the epoch and the index).
        max_items: keep only the first N files of each folder (sorted by name).
        serial_batches: pair item i with B image ``i % len(B)`` instead of a random one (the
            official ``--serial_batches``, used when testing).
        cache: keep every item in memory after its first load (only when items never change: fixed
            pairs, no random crop or flip).
        augment: ``data.augment`` (:class:`~ganzoo.data.transforms.Augment`): random resized crop, rotation
            and colour jitter after the preprocessing; null: none.
            A and B are unrelated images: each gets its own draw.

    The length is that of the larger folder; item ``i`` uses A image ``i % len(A)``.
    """

    def __init__(self, root: str | Path, split: str = "train", direction: str = "AtoB", load_size: int = 286,
                 crop_size: int = 256, preprocess: str = "resize_and_crop", flip: bool = True, input_nc: int = 3,
                 output_nc: int = 3, seed: int = 0, max_items: int | None = None,
                 serial_batches: bool = False, cache: bool = False,
                 augment: dict[str, Any] | None = None) -> None:
        super().__init__(root, split, direction, load_size, crop_size, preprocess, flip, input_nc, output_nc,
                         seed, max_items, cache, augment)
        self.serial_batches = bool(serial_batches)
        self.check_cache()
        source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
        self.folder_A = require_folder(self.root / f"{split}{source}", root=self.root,
                                       what=f"unpaired domain {source} images")
        self.folder_B = require_folder(self.root / f"{split}{target}", root=self.root,
                                       what=f"unpaired domain {target} images")
        self.paths_A = list_images(self.folder_A, max_items)
        self.paths_B = list_images(self.folder_B, max_items)

    def __len__(self) -> int:
        return max(len(self.paths_A), len(self.paths_B))

    def item_randomness(self) -> str | None:
        if not self.serial_batches:
            return "each A meets a random B (serial_batches is false)"
        return super().item_randomness()

    def _load(self, index: int) -> dict[str, torch.Tensor | str]:
        generator = self.generator(index)
        path_A = self.paths_A[index % len(self.paths_A)]
        if self.serial_batches:
            index_B = index % len(self.paths_B)
        else:
            index_B = random_int(generator, len(self.paths_B) - 1)
        path_B = self.paths_B[index_B]
        image_A, image_B = read_image(path_A), read_image(path_B)
        image_A = self.preprocess.apply(image_A, self.preprocess.sample(*image_A.size, generator), path=path_A)
        image_B = self.preprocess.apply(image_B, self.preprocess.sample(*image_B.size, generator), path=path_B)
        # data.augment: drawn after everything above (nothing is drawn without it), one draw per image
        extra_A, extra_B = self.augment.sample(generator), self.augment.sample(generator)
        image_A = self.augment.apply(image_A, extra_A, colour=self.augment.colours("A"))
        image_B = self.augment.apply(image_B, extra_B, colour=self.augment.colours("B"))
        return {"A": to_tensor(image_A, self.input_nc), "B": to_tensor(image_B, self.output_nc),
                "A_path": str(path_A), "B_path": str(path_B)}
