"""Which formulation each tuned convolution takes, chosen by timing them on this machine.

The fastest way to compute a convolution on a CPU depends on the CPU as much as on the sizes: size
rules measured on one 2-core host made CycleGAN's step slower on another, whose oneDNN backward
kernels are faster (README.md). So, as ``torch.backends.cudnn.benchmark`` does on CUDA, the first
call with a new *signature* (the layer's sizes, the input's shape, which gradients are needed, the
thread count) runs every equivalent formulation a few times on the call's own tensors and keeps the
fastest. The routes are PyTorch's own kernels (``native``) and the rewrites of
:mod:`ganzoo_cpu_kernels.gemm_conv`, :mod:`ganzoo_cpu_kernels.conv_backward` and
:mod:`ganzoo_cpu_kernels.winograd`.

- Layers under both :data:`TIMED_MIN_FLOPS` and :data:`TIMED_MIN_WEIGHTS` stay native without
  timing: there the timings are mostly noise and the step hardly depends on them. (Weights count on
  their own because oneDNN copies them into its layout on every call: a U-Net's 512-channel levels
  on 1x1-4x4 maps cost far more than their FLOPs say.)
- A rewrite must beat the native kernels by :data:`REWRITE_MARGIN`, so that noise does not flip a
  layer away from PyTorch's kernels for nothing; close calls get :data:`ROUNDS` more rounds.
- A choice, once made, is final: it is never timed again. Each route rounds differently, so a
  choice that could change mid-run would make two identical runs differ bit for bit.

The choices form a :class:`RouteTable` owned by one accelerator (:class:`ganzoo_cpu_kernels.CpuKernels`),
not by the process: two models prepared by two accelerators keep their own. The accelerator puts the
table in every checkpoint and restores it on resume, and may back it with a
:class:`ganzoo_cpu_kernels.route_cache.RouteCache` file, so that every run on this machine that
reads the file computes with the same kernels.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from torch.utils._python_dispatch import _get_current_dispatch_mode

from ganzoo_cpu_kernels.route_cache import RouteCache

NATIVE = "native"
#: A layer is timed if its forward FLOPs (2 x multiply-adds) or its weights reach these.
TIMED_MIN_FLOPS = 20_000_000
TIMED_MIN_WEIGHTS = 262_144
#: A rewrite is taken only when its best time is at least this fraction below the native one's.
REWRITE_MARGIN = 0.05
#: Timed rounds per route, after one untimed call each (oneDNN builds its primitives on the first).
ROUNDS = 5

TimedRoutes = Callable[[], Mapping[str, Callable[[], object]]]


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


class RouteTable:
    """The route chosen for each call signature, made once and then final.

    Args:
        cache: where choices timed here are added (and, by the accelerator, read from at start-up);
            None keeps them in this table only.

    A table is shared, not copied, by ``copy.deepcopy`` of a model (an EMA copy of a generator
    computes with the same kernels as the generator).
    """

    def __init__(self, cache: RouteCache | None = None) -> None:
        self.cache = cache
        self._choices: dict[str, str] = {}
        self._used: set[str] = set()  # signatures this run's calls met, or restored from its checkpoint
        self._timing = threading.Lock()
        #: Signatures timed by this table (none where every call found its choice made).
        self.timed = 0

    def choices(self) -> dict[str, str]:
        """Every choice the table holds (signature -> route), a cache's unused ones included."""
        return dict(self._choices)

    def used(self) -> dict[str, str]:
        """The choices this run needs to compute as it did: those its calls took, and those restored
        from its checkpoint (a checkpoint written before a layer's first call still carries them)."""
        return {signature: self._choices[signature] for signature in sorted(self._used)}

    def restore(self, table: Mapping[str, str], *, override: bool, used: bool) -> None:
        """Take over choices made earlier. ``override``: they replace this table's own for the same
        signatures (a checkpoint's), else they fill only signatures it has none for (a cache's).
        ``used``: they count as this run's (:meth:`used`) before any call takes them."""
        for signature, route in table.items():
            signature, route = str(signature), str(route)
            if override or signature not in self._choices:
                self._choices[signature] = route
            if used:
                self._used.add(signature)

    def clear(self) -> None:
        """Forget every choice."""
        self._choices.clear()
        self._used.clear()

    def choose(self, signature: str, timed: bool, timed_routes: TimedRoutes) -> str:
        """The route for a call with ``signature``: the table's, else (where ``timed``, see
        :func:`worth_timing`) measured now, remembered for good and added to the cache, else native.

        ``timed_routes`` builds, only when a measurement is due, one callable per eligible route that
        runs the call's forward (and its needed gradients) once.
        """
        if _get_current_dispatch_mode() is not None:
            # A FLOP counter (or another dispatch mode) sees the convolution's own maths, not a rewrite's
            # fewer multiplications, and no probes.
            return NATIVE
        route = self._choices.get(signature)
        if route is None and not timed:
            return NATIVE
        if route is None:
            with self._timing:  # a model called from two threads at once times a signature once
                route = self._choices.get(signature)
                if route is None:
                    route = self._choices[signature] = fastest_of(route_seconds(timed_routes()))
                    self.timed += 1
                    if self.cache is not None:
                        self.cache.add({signature: route})
        self._used.add(signature)
        return route

    def __deepcopy__(self, memo: dict[int, Any]) -> RouteTable:
        return self

    def __getstate__(self) -> dict[str, Any]:  # a pickled model: the lock is not state
        return {**self.__dict__, "_timing": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._timing = threading.Lock()
