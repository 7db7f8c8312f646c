"""The ``cpu_kernels`` accelerator: what a recipe's ``train.accelerators: [cpu_kernels]`` switches on.

The core calls ``prepare(model, recipe, device)`` once, after the networks are built and on their
device and before the optimizers exist, prints :attr:`CpuKernels.notice`, saves
:meth:`CpuKernels.state_dict` in every checkpoint and hands it back to
:meth:`CpuKernels.load_state_dict` on resume. Everything here is for float32 training on the CPU;
anywhere else ``prepare`` leaves the model and the process as they are.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ganzoo.registry import register
from ganzoo_cpu_kernels import cpu_allocator
from ganzoo_cpu_kernels.conv_routes import RouteTable
from ganzoo_cpu_kernels.cpu_convs import use_tuned_cpu_convs
from ganzoo_cpu_kernels.route_cache import RouteCache, machine_signature
from ganzoo_cpu_kernels.side_by_side import SideBySide

DEFAULT_CACHE = "~/.cache/ganzoo/cpu_kernels_routes.json"
STATE_VERSION = 1


def _train_setting(recipe: Any, key: str, default: Any) -> Any:
    """``recipe.train.<key>`` (or ``recipe["train"][key]``), else ``default``: the recipe is the core's,
    and this reads no more of it than whether the convolutions may be swapped."""
    train = getattr(recipe, "train", None)
    if train is None and isinstance(recipe, Mapping):
        train = recipe.get("train")
    if isinstance(train, Mapping):
        return train.get(key, default)
    return getattr(train, key, default)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@register("accelerator", "cpu_kernels")
class CpuKernels:
    """Hand-written CPU convolutions (Winograd, im2col GEMM, ...) timed per layer signature, + glibc malloc reuse.

    Args:
        cache: a JSON file of the routes chosen on this machine (``~`` expanded), read at ``prepare``
            and added to whenever a layer is timed; None times every run afresh.
        reuse_freed_memory: on Linux with glibc, have ``malloc`` keep freed memory for the next step's
            tensors (:mod:`ganzoo_cpu_kernels.cpu_allocator`).
        side_by_side: run a model's independent updates (BicycleGAN's D and D2) together, sharing the
            threads (:mod:`ganzoo_cpu_kernels.side_by_side`), where there are at least two.

    On the CPU, in float32 and without ``train.compile``, every plain ``nn.Conv2d`` and
    ``nn.ConvTranspose2d`` of ``model.networks`` becomes its tuned class
    (:mod:`ganzoo_cpu_kernels.cpu_convs`): each call signature takes the fastest of PyTorch's kernels
    and the rewrites, the same maths with other rounding. The choice is timed once, on the first call,
    and then final. With a cache, a run that finds its choices there times nothing and rounds exactly
    as every other run that read them; without one (or before it holds them) two runs may choose, and
    so round, differently. The choices a run took travel in its checkpoints, and a resumed run takes
    them over, whatever the cache says.
    """

    def __init__(self, cache: str | None = DEFAULT_CACHE, reuse_freed_memory: bool = True,
                 side_by_side: bool = True) -> None:
        self.cache = None if cache is None else RouteCache(cache)
        self.reuse_freed_memory = bool(reuse_freed_memory)
        self.side_by_side = bool(side_by_side)
        #: The updater's runner of independent updates, set by :meth:`prepare` where it applies.
        self.runner: SideBySide | None = None
        self.routes = RouteTable(self.cache)
        #: One line for the trainer to print at start-up, set by :meth:`prepare`.
        self.notice: str | None = None
        #: Convolutions switched to their tuned classes by :meth:`prepare`.
        self.switched = 0
        #: Whether :meth:`prepare` set the process's allocator.
        self.reused_freed_memory = False

    def __repr__(self) -> str:
        cache = None if self.cache is None else str(self.cache.path)
        return (f"CpuKernels(cache={cache!r}, reuse_freed_memory={self.reuse_freed_memory}, "
                f"side_by_side={self.side_by_side})")

    def prepare(self, model: torch.nn.Module, recipe: Any, device: torch.device) -> None:
        """Switch ``model.networks``' convolutions to the tuned classes and set the allocator, where
        ``device`` is the CPU; elsewhere change nothing."""
        device = torch.device(device)
        if device.type != "cpu":
            self.notice = f"cpu_kernels: off on {device.type} (CPU kernels only); PyTorch's convolutions run"
            return
        if self.reuse_freed_memory:
            self.reused_freed_memory = cpu_allocator.reuse_freed_memory()
        precision = _train_setting(recipe, "precision", "fp32")
        if _train_setting(recipe, "compile", False) or precision not in (None, "fp32"):
            reason = "train.compile" if _train_setting(recipe, "compile", False) else f"precision {precision}"
            self.notice = f"cpu_kernels: convolutions left to PyTorch under {reason} (float32 eager only)"
            return
        if self.side_by_side and torch.get_num_threads() >= 2:
            self.runner = SideBySide()
        cached = {} if self.cache is None else self.cache.load()
        self.routes.restore(cached, override=False, used=False)  # a checkpoint's routes stay ahead of them
        networks = getattr(model, "networks", model)
        self.switched = use_tuned_cpu_convs(networks, self.routes)
        if self.cache is None:
            self.notice = ("cpu_kernels: timing convolution routes on first use, no cache (cache: null): "
                           "two runs may round differently")
        elif cached:
            self.notice = (f"cpu_kernels: convolution routes from {self.cache.path} (repeatable on this machine; "
                           "layers it lacks are timed once and added)")
        else:
            self.notice = (f"cpu_kernels: timing convolution routes on first use; until {self.cache.path} holds "
                           "them, two runs may round differently")
        if self.runner is not None:
            self.notice += "; independent updates (BicycleGAN's D and D2) side by side"

    def prepare_updater(self, updater: Any) -> None:
        """Run the updater's independent updates side by side, where :meth:`prepare` found it pays;
        never under data parallelism, whose collectives every process must issue in one order."""
        if self.runner is not None and not _distributed():
            updater.run_independent = self.runner

    def state_dict(self) -> dict[str, Any]:
        """The routes this run took (plain data, for a checkpoint loaded with ``weights_only=True``)."""
        return {"version": STATE_VERSION, "machine": machine_signature(), "routes": self.routes.used()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take over a checkpoint's routes, ahead of the cache's, so a resumed run computes as before."""
        routes = state.get("routes", {})
        if not isinstance(routes, Mapping):
            raise ValueError(f"cpu_kernels: a checkpoint's routes must be a mapping, got {type(routes).__name__}")
        self.routes.restore(routes, override=True, used=True)
