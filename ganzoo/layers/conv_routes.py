"""Which formulation each tuned convolution takes, chosen by timing them on this machine.

The fastest way to compute a convolution on a CPU depends on the CPU as much as on the sizes: size
rules measured on a 2-core Xeon made CycleGAN's step 5-25% slower on a 2-core AMD EPYC, whose oneDNN
backward kernels are faster (docs/performance.md). So, as ``torch.backends.cudnn.benchmark`` does on
CUDA, the first call with a new *signature* (the layer's sizes, the input's shape, which gradients
are needed, the thread count) runs every equivalent formulation a few times on the call's own
tensors and keeps the fastest for the rest of the process. The routes are PyTorch's own kernels
(``native``) and the rewrites of :mod:`ganzoo.layers.gemm_conv`, :mod:`ganzoo.layers.conv_backward`
and :mod:`ganzoo.layers.winograd`.

- Layers under both :data:`TIMED_MIN_FLOPS` and :data:`TIMED_MIN_WEIGHTS` stay native without
  timing: there the timings are mostly noise and the step hardly depends on them. (Weights count on
  their own because oneDNN copies them into its layout on every call: a U-Net's 512-channel levels
  on 1x1-4x4 maps cost far more than their FLOPs say.)
- A rewrite must beat the native kernels by :data:`REWRITE_MARGIN`, so that noise does not flip a
  layer away from PyTorch's kernels for nothing; close calls get :data:`ROUNDS` more rounds.
- Each choice is timed a second time :data:`RETIME_AFTER_SECONDS` later, and the mean of each
  route's two best times decides for good.

The choices form a table (signature -> route) that every checkpoint carries (``conv_routes``) and a
resumed run restores before its first step, so that it computes with the same kernels as the run
it continues and its weights stay bit-identical to an uninterrupted run's (restored choices are
final: a checkpoint written before a choice's second timing may leave the resumed run with the
first-timing choice where the uninterrupted run changed its mind). Two separate runs may
choose differently, as two cuDNN-benchmarked runs may; ``train.tuned_cpu_convs: false`` keeps
PyTorch's kernels everywhere.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from torch.utils._python_dispatch import _get_current_dispatch_mode

NATIVE = "native"
#: A layer is timed if its forward FLOPs (2 x multiply-adds) or its weights reach these.
TIMED_MIN_FLOPS = 20_000_000
TIMED_MIN_WEIGHTS = 262_144
#: A rewrite is taken only when its best time is at least this fraction below the native one's.
REWRITE_MARGIN = 0.05
#: Timed rounds per route, after one untimed call each (oneDNN builds its primitives on the first).
ROUNDS = 5

#: A timed signature is timed again at its first call this many seconds later, and the mean of each
#: route's best times in the two timings decides for good. Other tenants of a shared host slow the
#: memory-bound rewrites (Winograd's transforms) for seconds to minutes at a time: a single timing in
#: such a phase stuck for the whole run, and the better of two timings picks a rewrite that loses to
#: oneDNN whenever the phase returns (CycleGAN's batch-1 ResNet blocks: 14-16 ms quiet, 24 ms slow,
#: oneDNN 19-20 ms); the mean estimates the cost over both (docs/performance.md).
RETIME_AFTER_SECONDS = 30.0
#: Off in ``ganzoo bench`` while it times steps: no route timing among them.
retiming = True

_table: dict[str, str] = {}
_timing = threading.Lock()
_provisional: dict[str, tuple[float, dict[str, float]]] = {}  # signature -> (when timed, best seconds by route)


def route_table() -> dict[str, str]:
    """A copy of the choices made so far in this process (signature -> route)."""
    return dict(_table)


def restore_route_table(table: Mapping[str, str]) -> None:
    """Take over choices made earlier (a resumed run's checkpoint); they are final."""
    for signature, route in table.items():
        _table[str(signature)] = str(route)
        _provisional.pop(str(signature), None)


def clear_route_table() -> None:
    """Forget every choice (tests; a new run in the same process)."""
    _table.clear()
    _provisional.clear()


def retime_pending_now() -> bool:
    """Make every choice still waiting for its second timing due at its next call; returns whether
    any was waiting. (``ganzoo bench``: one untimed step after its warm-up then stands for the
    second timing a training run makes :data:`RETIME_AFTER_SECONDS` in.)"""
    with _timing:
        for signature, (_, seconds) in list(_provisional.items()):
            _provisional[signature] = (float("-inf"), seconds)
        return bool(_provisional)


def worth_timing(flops: int, weights: int) -> bool:
    """Whether a layer's route is timed (else it stays native)."""
    return flops >= TIMED_MIN_FLOPS or weights >= TIMED_MIN_WEIGHTS


def route_seconds(routes: Mapping[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """Each route's best time over ``rounds`` (the routes alternating, so that the machine's drift
    hits all alike); where the best rewrite is within three margins of native, ``rounds`` more."""
    for run in routes.values():
        run()
    best = {name: float("inf") for name in routes}

    def time_rounds() -> None:
        for _ in range(rounds):
            for name, run in routes.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)

    time_rounds()
    rewrites = [name for name in best if name != NATIVE]
    if NATIVE in best and rewrites and abs(1 - min(best[name] for name in rewrites) / best[NATIVE]) < 3 * REWRITE_MARGIN:
        time_rounds()
    return best


def fastest_of(seconds: Mapping[str, float]) -> str:
    """The fastest route; ``native`` unless a rewrite beats it by :data:`REWRITE_MARGIN`."""
    winner = min(seconds, key=seconds.__getitem__)
    if NATIVE in seconds and seconds[winner] > seconds[NATIVE] * (1 - REWRITE_MARGIN):
        return NATIVE
    return winner


def fastest_route(routes: Mapping[str, Callable[[], object]], rounds: int = ROUNDS) -> str:
    """:func:`fastest_of` the routes' :func:`route_seconds`."""
    return fastest_of(route_seconds(routes, rounds))


def choose_route(signature: str, timed: bool, timed_routes: Callable[[], Mapping[str, Callable[[], object]]]) -> str:
    """The route for a call with ``signature``: the table's, else (where ``timed``, see
    :func:`worth_timing`) measured now and remembered, else native. A choice measured in this
    process is measured once more :data:`RETIME_AFTER_SECONDS` later (see there).

    ``timed_routes`` builds, only when a measurement is due, one callable per eligible route that
    runs the call's forward (and its needed gradients) once.
    """
    if _get_current_dispatch_mode() is not None:
        # A FLOP counter (or another dispatch mode) sees the convolution's own maths, not a rewrite's
        # fewer multiplications, and no probes.
        return NATIVE
    route = _table.get(signature)
    if route is not None and not _retime_due(signature):
        return route
    if route is None and not timed:
        return NATIVE
    with _timing:  # parallel branches (train.parallel_branches) may meet the same signature at once
        route = _table.get(signature)
        if route is not None and not _retime_due(signature):
            return route  # the other thread just timed it
        seconds = route_seconds(timed_routes())
        pending = _provisional.pop(signature, None)
        if pending is not None:
            seconds = {name: (t + pending[1].get(name, t)) / 2 for name, t in seconds.items()}
        elif retiming:
            _provisional[signature] = (time.monotonic(), seconds)
        route = _table[signature] = fastest_of(seconds)
    return route


def _retime_due(signature: str) -> bool:
    pending = _provisional.get(signature)
    return pending is not None and retiming and time.monotonic() - pending[0] >= RETIME_AFTER_SECONDS
