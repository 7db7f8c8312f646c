"""Independent parts of a training step, side by side on the CPU (``train.parallel_branches``).

A small step (the 32 px shapes world, batch 8) is hundreds of kernels of a millisecond or less. Split
over two intra-op threads, such a kernel spends much of its time starting and joining the threads:
on this project's 2-core machine, two threads made the shapes step only 1.4x faster than one. Parts
of a step that share nothing either of them writes, such as BicycleGAN's D and D2 updates, can
instead each run on their own Python thread with one intra-op thread, so that the cores work on
different kernels at once. The maths is unchanged: each part computes what it computed in turn
(sums may round differently, as with any change of thread count).

Only on the CPU: CUDA kernels are asynchronous already, so there the parts run in turn. Also in turn
in a distributed run, where the parts' gradient all-reduces must reach every process in one order.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class BranchRunner:
    """Runs a list of independent jobs, side by side when that can pay and in turn otherwise.

    Args:
        enabled: the recipe's ``train.parallel_branches``.
        device: the model's device; only a CPU runs jobs side by side.

    Each job is a callable without arguments. Jobs must not write what another job reads (weights,
    gradients, buffers, optimizer state). Grad mode and autocast are per thread in PyTorch, so a
    job sets up its own (``torch.enable_grad``, ``torch.autocast``).
    """

    def __init__(self, enabled: bool, device: torch.device | str) -> None:
        self.enabled = bool(enabled) and torch.device(device).type == "cpu"
        self._pool: ThreadPoolExecutor | None = None

    def side_by_side(self) -> bool:
        """Whether :meth:`run` would use threads now (two or more intra-op threads, not distributed)."""
        distributed = dist.is_available() and dist.is_initialized()
        return self.enabled and torch.get_num_threads() > 1 and not distributed

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """The jobs' results, in order."""
        if len(jobs) < 2 or not self.side_by_side():
            return [job() for job in jobs]
        threads = torch.get_num_threads()
        per_job = max(1, threads // len(jobs))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, threads - 1), thread_name_prefix="ganzoo-branch")
        # The intra-op thread count is process-wide in PyTorch (OpenMP's is per thread): set it for the
        # jobs, and back for the rest of the step once all of them are done.
        torch.set_num_threads(per_job)
        futures: list[Future[T]] = []
        try:
            futures = [self._pool.submit(_on_threads, per_job, job) for job in jobs[1:]]
            first = jobs[0]()
            return [first] + [f.result() for f in futures]
        finally:
            wait(futures)  # a job that failed in this thread must not leave others running on the weights
            torch.set_num_threads(threads)

    def __getstate__(self) -> dict[str, Any]:  # deepcopy/pickle of a model: threads are not state
        return {"enabled": self.enabled, "_pool": None}


def _on_threads(count: int, job: Callable[[], T]) -> T:
    torch.set_num_threads(count)  # OpenMP keeps one count per thread: this worker's own
    return job()
