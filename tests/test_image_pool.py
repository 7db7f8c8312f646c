"""CycleGAN's image pool (``ganzoo.models.image_pool``): vectorised, yet the official per-image history."""
from __future__ import annotations

import random

import pytest
import torch

from ganzoo.models.image_pool import ImagePool


class LoopPool:
    """The official per-image history pool, drawing the same random numbers as ImagePool."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.images = size, []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        free = min(self.size - len(self.images), images.shape[0])
        rest = images.shape[0] - free
        if rest > 0:
            swap = torch.rand(rest, generator=self.generator) > 0.5
            slots = torch.randint(0, self.size, (rest,), generator=self.generator)
        for i, image in enumerate(images):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif swap[i - free]:
                j = int(slots[i - free])
                out.append(self.images[j].clone())
                self.images[j] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


@pytest.mark.parametrize("size,batch", [(3, 8), (5, 2), (4, 1), (2, 16)])
def test_vectorised_pool_matches_the_per_image_loop(size: int, batch: int) -> None:
    pool, reference = ImagePool(size, seed=7), LoopPool(size, seed=7)
    rng = random.Random(0)
    for step in range(12):
        images = torch.full((batch, 1, 2, 2), 0.0) + torch.arange(batch).view(-1, 1, 1, 1) + 100 * step
        images = images + rng.random()
        torch.testing.assert_close(pool.query(images), reference.query(images), rtol=0, atol=0)
        torch.testing.assert_close(pool.images[: pool.count], torch.stack(reference.images), rtol=0, atol=0)


def test_vectorised_pool_resumes_from_its_state_dict() -> None:
    pool = ImagePool(4, seed=3)
    for step in range(3):
        pool.query(torch.randn(3, 2, 4, 4))
    clone = ImagePool(4, seed=99)
    clone.load_state_dict(pool.state_dict())
    images = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(clone.query(images), pool.query(images), rtol=0, atol=0)
    torch.testing.assert_close(clone.images, pool.images, rtol=0, atol=0)
