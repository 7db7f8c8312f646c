"""The history buffer of generated images CycleGAN shows its discriminators (Shrivastava et al.)."""
from __future__ import annotations

import torch


class ImagePool:
    """Keeps up to ``size`` past fakes; returns a batch where each image is, with probability 1/2,
    swapped for a stored one (and the new one stored in its place), as the official CycleGAN does.

    Its randomness comes from its own generator so a resumed run draws the same swaps.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: torch.Tensor | None = None
        self.count = 0
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        out = images.clone()
        if self.images is None:
            self.images = torch.empty((self.size, *images.shape[1:]), dtype=images.dtype, device=images.device)
        n = images.shape[0]
        # Fill free slots first (the pool returns those images as they are).
        free = min(self.size - self.count, n)
        if free > 0:
            self.images[self.count:self.count + free] = images[:free]
            self.count += free
        rest = n - free
        if rest > 0:
            swap = torch.rand(rest, generator=self.generator) > 0.5
            slots = torch.randint(0, self.size, (rest,), generator=self.generator)
            self._swap(images[free:], out[free:], slots[swap].to(images.device),
                       torch.nonzero(swap).flatten().to(images.device))
        return out

    def _swap(self, images: torch.Tensor, out: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor) -> None:
        """Swap ``images[rows[i]]`` with pool slot ``slots[i]`` for every i, in order, without a Python loop.

        Done one at a time (the official semantics), a slot drawn twice in one batch hands the
        second image the first one's picture, not the old stored one, and keeps the last image
        written to it. Both are expressed with index arithmetic: each swap reads from the latest
        earlier swap to the same slot (if any) and only each slot's last swap writes the pool.
        """
        if rows.numel() == 0:
            return
        order = torch.arange(rows.numel(), device=rows.device)
        same = (slots[:, None] == slots[None, :])
        earlier = same & (order[None, :] < order[:, None])  # [i, j]: swap j precedes swap i at i's slot
        # Index of the latest earlier swap to the same slot, or -1 (the batch is small: n^2 is cheap).
        previous = torch.where(earlier, order[None, :], torch.full_like(same, -1, dtype=order.dtype)).amax(1)
        later = same & (order[None, :] > order[:, None])
        is_last = ~later.any(1)
        from_batch = previous >= 0
        returned = torch.where(from_batch.view(-1, *([1] * (images.dim() - 1))),
                               images[rows[previous.clamp(min=0)]], self.images[slots])
        self.images[slots[is_last]] = images[rows[is_last]]
        out[rows] = returned

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "count": self.count,
            "images": None if self.images is None else self.images[: self.count].cpu(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        self.size = int(state["size"])
        self.count = int(state["count"])
        stored = state["images"]
        if stored is None:
            self.images = None
        else:
            self.images = torch.empty((self.size, *stored.shape[1:]), dtype=stored.dtype, device=device or stored.device)
            self.images[: self.count] = stored.to(self.images.device)
        self.generator.set_state(state["generator"])
