"""A batch order that depends only on (seed, epoch), so a run resumed mid-epoch sees the same data."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Shuffled full batches of ``num_items`` indices, reproducible per epoch, startable mid-epoch.

    The last incomplete batch is dropped: BicycleGAN needs full, even batches and the other models
    lose nothing that the next epoch does not show them.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch ``epoch`` from its ``start_batch``-th batch."""
        self.epoch = epoch
        self.start = start_batch

    def __len__(self) -> int:
        """Batches per epoch (per rank)."""
        return self.num_items // (self.batch_size * self.world_size)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_items, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order(self.epoch)
        global_batch = self.batch_size * self.world_size
        for b in range(self.start, len(self)):
            chunk = order[b * global_batch:(b + 1) * global_batch]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()
