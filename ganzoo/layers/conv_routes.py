"""Which formulation each tuned convolution takes, chosen by timing them on this machine.

The fastest way to compute a convolution on a CPU depends on the CPU as much as on the sizes: size
rules measured on a 2-core Xeon made CycleGAN's step 5-25% slower on a 2-core AMD EPYC, whose oneDNN
backward kernels are faster (docs/performance.md). So, as ``torch.backends.cudnn.benchmark`` does on
CUDA, the first call with a new *signature* (the layer's sizes, the input's shape, which gradients
are needed, the thread count) runs every equivalent formulation a few times on the call's own
tensors and keeps the fastest for the rest of the process. The routes are PyTorch's own kernels
(``native``) and the rewrites of :mod:`ganzoo.layers.gemm_conv`, :mod:`ganzoo.layers.conv_backward`
and :mod:`ganzoo.layers.winograd`.

- Layers under :data:`MEASURED_MIN_FLOPS` stay native without timing: there the timings are mostly
  noise and the step hardly depends on them.
- A rewrite must beat the native kernels by :data:`REWRITE_MARGIN`, so that noise does not flip a
  layer away from PyTorch's kernels for nothing.

The choices form a table (signature -> route) that every checkpoint carries (``conv_routes``) and a
resumed run restores before its first step, so that it computes with the same kernels as the run
it continues and its weights stay bit-identical to an uninterrupted run's. Two separate runs may
choose differently, as two cuDNN-benchmarked runs may; ``train.tuned_cpu_convs: false`` keeps
PyTorch's kernels everywhere.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from torch.utils._python_dispatch import _get_current_dispatch_mode

NATIVE = "native"
#: Forward FLOPs (2 x multiply-adds) below which a layer keeps PyTorch's kernels untimed.
MEASURED_MIN_FLOPS = 50_000_000
#: A rewrite is taken only when its best time is at least this fraction below the native one's.
REWRITE_MARGIN = 0.05
#: Timed rounds per route, after one untimed call each (oneDNN builds its primitives on the first).
ROUNDS = 5

_table: dict[str, str] = {}


def route_table() -> dict[str, str]:
    """A copy of the choices made so far in this process (signature -> route)."""
    return dict(_table)


def restore_route_table(table: Mapping[str, str]) -> None:
    """Take over choices made earlier (a resumed run's checkpoint); they win over new measurements."""
    _table.update({str(k): str(v) for k, v in table.items()})


def clear_route_table() -> None:
    """Forget every choice (tests; a new run in the same process)."""
    _table.clear()


def fastest_route(routes: Mapping[str, Callable[[], object]], rounds: int = ROUNDS) -> str:
    """The route whose call is fastest (best of ``rounds``, the routes alternating so that the
    machine's drift hits all alike); ``native`` unless a rewrite beats it by :data:`REWRITE_MARGIN`."""
    for run in routes.values():
        run()
    best = {name: float("inf") for name in routes}
    for _ in range(rounds):
        for name, run in routes.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    winner = min(best, key=best.__getitem__)
    if NATIVE in best and best[winner] > best[NATIVE] * (1 - REWRITE_MARGIN):
        return NATIVE
    return winner


def choose_route(signature: str, flops: int, timed_routes: Callable[[], Mapping[str, Callable[[], object]]]) -> str:
    """The route for a call with ``signature``: the table's, else measured now and remembered.

    ``timed_routes`` builds, only when a measurement is due, one callable per eligible route that
    runs the call's forward (and its needed gradients) once.
    """
    route = _table.get(signature)
    if route is not None:
        return route
    if flops < MEASURED_MIN_FLOPS:
        return NATIVE
    if _get_current_dispatch_mode() is not None:
        # Inside a FLOP counter or another dispatch mode the probes would be counted or traced too.
        return NATIVE
    route = fastest_route(timed_routes())
    _table[signature] = route
    return route
