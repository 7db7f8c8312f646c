"""Independent updates side by side, sharing the CPU threads (``cpu_kernels(side_by_side=True)``).

A model marks updates that share nothing with ``updater.update_independent`` (BicycleGAN's D and
D2); the core runs them one after the other. On a CPU, the small late layers of a discriminator
keep few threads busy, so two such updates run faster together, each on its share of the threads,
than in turn on all of them. Each update runs whole on one Python thread with a fixed number of
intra-op threads and reads nothing another writes, so it computes the bits it would compute alone
on that many threads, however the threads interleave: two runs give the same bits
(``tests/test_cpu_kernels_side_by_side.py``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ganzoo.training.updates import Forward


def _with_threads(threads: int, run_one: Callable[[str, Forward], torch.Tensor], group: str, forward: Forward
                  ) -> torch.Tensor:
    torch.set_num_threads(threads)  # this thread's intra-op threads only
    return run_one(group, forward)


class SideBySide:
    """An ``updater.run_independent`` that runs up to ``at_once`` updates together (this thread's
    included), sharing this thread's intra-op threads among them (at least one each; the count is
    restored afterwards).
    """

    def __init__(self, at_once: int = 2) -> None:
        if at_once < 2:
            raise ValueError(f"side by side means at least 2 updates at once, got {at_once}")
        self.at_once = at_once
        self._pool: ThreadPoolExecutor | None = None  # made on first use; its threads end with the process

    def __repr__(self) -> str:
        return f"SideBySide(at_once={self.at_once})"

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.at_once - 1, thread_name_prefix="cpu_kernels-update")
        return self._pool

    def __call__(self, updates: Mapping[str, Forward], run_one: Callable[[str, Forward], torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
        items = list(updates.items())
        if len(items) < 2:
            return {group: run_one(group, forward) for group, forward in items}
        pool = self._executor()
        own_threads = torch.get_num_threads()
        share = max(1, own_threads // min(len(items), self.at_once))
        # the first update here, the others on the pool's threads (in order, when there are more of
        # them than threads)
        others: list[tuple[str, Future[torch.Tensor]]] = [
            (group, pool.submit(_with_threads, share, run_one, group, forward)) for group, forward in items[1:]]
        torch.set_num_threads(share)
        try:
            losses = {items[0][0]: run_one(*items[0])}
        finally:
            torch.set_num_threads(own_threads)
            for _, future in others:  # never leave an update running behind an error
                future.exception()
        losses.update((group, future.result()) for group, future in others)
        return {group: losses[group] for group, _ in items}
