"""Paired images stored side by side: ``ROOT/<split>/*.png``, each one A|B (A left half, B right half)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganzoo.data.images import list_images, read_image, require_folder
from ganzoo.data.transforms import PreprocessedDataset, to_tensor
from ganzoo.errors import DataError
from ganzoo.registry import register


@register("dataset", "aligned")
class AlignedDataset(PreprocessedDataset):
    """Paired A|B images side by side in ROOT/<split>/ (pix2pix, BicycleGAN); same crop and flip for A and B.

    Args:
        root: dataset folder holding ``train/``, ``val/``, ``test/`` ...
        split: sub-folder to read (the official ``--phase``).
        direction: ``AtoB`` feeds the left half to the network, ``BtoA`` the right half.
        load_size, crop_size, preprocess, flip: see :mod:`ganzoo.data.transforms`.
        input_nc, output_nc: channels of the network input ``A`` and target ``B`` (1 or 3).
        seed: seeds the per-item random crops and flips (with the epoch and the index).
        max_items: keep only the first N files (sorted by name).
        cache: keep every item in memory after its first load (only when items never change: no
            random crop or flip).
        augment: ``data.augment`` (:class:`~ganzoo.data.transforms.Augment`): random resized crop, rotation
            and colour jitter after the preprocessing; null: none.
            One draw per pair: A and B get the same crop and rotation (and the same colour factors
            where ``color_on`` is ``both``).
    """

    def __init__(self, root: str | Path, split: str = "train", direction: str = "AtoB", load_size: int = 286,
                 crop_size: int = 256, preprocess: str = "resize_and_crop", flip: bool = True, input_nc: int = 3,
                 output_nc: int = 3, seed: int = 0, max_items: int | None = None,
                 cache: bool = False, augment: dict[str, Any] | None = None) -> None:
        super().__init__(root, split, direction, load_size, crop_size, preprocess, flip, input_nc, output_nc,
                         seed, max_items, cache, augment)
        self.check_cache()
        self.folder = require_folder(self.root / split, root=self.root, what="aligned A|B images")
        self.paths = list_images(self.folder, max_items)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.paths[index]
        pair = read_image(path)
        width, height = pair.size
        if width % 2:
            raise DataError(f"{path} is {width}x{height}: an aligned image needs an even width "
                            "(A in the left half, B in the right half)",
                            hint="use the 'single' or 'unaligned' dataset for images that are not A|B pairs")
        half = width // 2
        left, right = pair.crop((0, 0, half, height)), pair.crop((half, 0, width, height))
        source, target = (left, right) if self.direction == "AtoB" else (right, left)
        # One draw for both halves: a pair must stay pixel-aligned after cropping and flipping.
        generator = self.generator(index)
        augmentation = self.preprocess.sample(half, height, generator)
        extra = self.augment.sample(generator)  # nothing drawn without data.augment
        source = self.preprocess.apply(source, augmentation, path=path)
        target = self.preprocess.apply(target, augmentation, path=path)
        source = self.augment.apply(source, extra, colour=self.augment.colours("A"))
        target = self.augment.apply(target, extra, colour=self.augment.colours("B"))
        return {"A": to_tensor(source, self.input_nc), "B": to_tensor(target, self.output_nc),
                "A_path": str(path), "B_path": str(path)}
