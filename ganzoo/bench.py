"""Timing the real training step of a recipe on synthetic tensors (``ganzoo bench``).

The model is built exactly as ``ganzoo train`` builds it (same recipe resolution, same
``train_step``), but the batch is random data of the recipe's shapes, so no dataset is needed
and data loading never shows up in the figures. Reported per run:

- seconds per step (median, min, max over the timed steps) and images per second;
- peak memory: the process's peak resident set size on the CPU (``getrusage``), the peak of
  ``torch.cuda.max_memory_allocated`` on CUDA;
- floating-point operations of one step counted by :class:`torch.utils.flop_counter.FlopCounterMode`
  (convolutions and matrix products, forward and backward), the achieved FLOP/s and, when the
  device's peak is known or estimated, the fraction of it.

    result = run_benchmark(prepare_recipe("recipes/pix2pix_facades.yaml"), steps=10, warmup=2)
    print(result.median_s, result.achieved_tflops)
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ganzoo.errors import GanzooError
from ganzoo.recipe.resolve import build_meta_networks
from ganzoo.recipe.schema import Recipe
from ganzoo.registry import get_component
from ganzoo.training.device import resolve_device
from ganzoo.training.rng import seed_everything
from ganzoo.training.trainer import TrainingParts, build_training

#: Dense peak TFLOP/s of a few CUDA devices by (name fragment, precision); fp32 is without TF32.
CUDA_PEAK_TFLOPS: dict[tuple[str, str], float] = {
    ("H200", "fp32"): 67.0, ("H200", "bf16"): 989.0, ("H200", "fp16"): 989.0,
    ("H100", "fp32"): 67.0, ("H100", "bf16"): 989.0, ("H100", "fp16"): 989.0,
    ("A100", "fp32"): 19.5, ("A100", "bf16"): 312.0, ("A100", "fp16"): 312.0,
}

#: fp32 FLOPs per cycle per core for each vector ISA torch reports (2 FMA units x lanes x 2).
CPU_FLOPS_PER_CYCLE = {"AVX512": 64, "AVX2": 32, "DEFAULT": 16}


@dataclass
class BenchResult:
    """What one ``ganzoo bench`` run measured; ``to_dict`` is the ``--json`` output."""

    recipe: str
    model: str
    device: str
    precision: str
    threads: int
    batch_size: int
    image_size: int
    steps: int
    warmup: int
    step_seconds: list[float] = field(default_factory=list)
    peak_memory_bytes: int = 0
    memory_kind: str = "rss"
    flops_per_step: int = 0
    peak_tflops: float | None = None
    peak_source: str | None = None
    channels_last: bool = False
    compiled: bool = False
    accelerators: list[str] = field(default_factory=list)  # train.accelerators that were applied
    warning: str | None = None  # why the precision will likely be slow here

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_seconds)

    @property
    def min_s(self) -> float:
        return min(self.step_seconds)

    @property
    def max_s(self) -> float:
        return max(self.step_seconds)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median_s

    @property
    def achieved_tflops(self) -> float:
        return self.flops_per_step / self.median_s / 1e12

    @property
    def fraction_of_peak(self) -> float | None:
        return None if not self.peak_tflops else self.achieved_tflops / self.peak_tflops

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("median_s", "min_s", "max_s", "images_per_s", "achieved_tflops", "fraction_of_peak"):
            out[name] = getattr(self, name)
        out["peak_memory_mib"] = self.peak_memory_bytes / 2**20
        return out


def cpu_peak_tflops(threads: int | None = None) -> tuple[float | None, str]:
    """An estimate of the CPU's fp32 peak: threads x clock x FMA throughput of its vector ISA."""
    threads = threads or torch.get_num_threads()
    mhz = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    mhz = max(mhz or 0.0, float(line.split(":")[1]))
    except OSError:
        pass
    if not mhz:
        return None, "unknown (no clock rate found)"
    isa = torch.backends.cpu.get_cpu_capability()
    per_cycle = CPU_FLOPS_PER_CYCLE.get(isa, CPU_FLOPS_PER_CYCLE["DEFAULT"])
    peak = threads * mhz * 1e6 * per_cycle / 1e12
    return peak, f"estimate: {threads} threads x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOP/cycle ({isa})"


def device_peak_tflops(device: torch.device, precision: str) -> tuple[float | None, str | None]:
    """The device's peak TFLOP/s for ``precision`` when known (CUDA table) or estimated (CPU, fp32)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for (fragment, prec), tflops in CUDA_PEAK_TFLOPS.items():
            if fragment in name and prec == precision:
                return tflops, f"{fragment} datasheet, dense {precision}"
        return None, None
    if device.type == "cpu" and precision == "fp32":
        return cpu_peak_tflops()
    return None, None


def _first_generator(networks: Mapping[str, nn.Module], model_cls: type) -> nn.Module:
    kinds = getattr(model_cls, "network_kinds", {})
    for name, net in networks.items():
        if kinds.get(name) == "generator":
            return net
    raise GanzooError(f"{model_cls.__name__} declares no generator, so ganzoo bench cannot shape a batch")


def generator_of(model: nn.Module) -> nn.Module:
    """The model's first generator (``G`` or ``G_A``): its channels give the batch's shapes."""
    return _first_generator(model.networks, type(model))


def synthetic_batch(recipe: Recipe, model: nn.Module, device: torch.device,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of uniform noise in [-1, 1] with the recipe's batch size, crop size and channels."""
    return _noise_batch(recipe, generator_of(model), device, seed)


def _noise_batch(recipe: Recipe, G: nn.Module, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    data, n = recipe.data, recipe.train.batch_size
    in_nc = data.input_nc or G.input_nc
    out_nc = data.output_nc or G.output_nc
    size = data.crop_size
    gen = torch.Generator().manual_seed(seed)
    A = torch.rand(n, in_nc, size, size, generator=gen) * 2 - 1
    B = torch.rand(n, out_nc, size, size, generator=gen) * 2 - 1
    if recipe.train.channels_last:
        A, B = A.contiguous(memory_format=torch.channels_last), B.contiguous(memory_format=torch.channels_last)
    return {"A": A.to(device), "B": B.to(device), "A_path": ["synthetic"] * n, "B_path": ["synthetic"] * n}


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): CUDA max allocated, else this process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024), "rss"  # Linux reports KiB, macOS bytes


def build_parts(recipe: Recipe, device: torch.device) -> TrainingParts:
    """The recipe's model, optimizers and updater as ``ganzoo train`` builds them; the model's
    ``materialize`` hook sees the synthetic batch (``ganzoo train`` gives it a few training inputs)."""
    seed_everything(recipe.train.seed)
    model_cls = get_component("model", recipe.model.type).factory
    G = _first_generator(build_meta_networks(recipe), model_cls)  # its channels, before the model exists
    return build_training(recipe, device, sample_batch=_noise_batch(recipe, G, device, recipe.train.seed))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_benchmark(recipe: Recipe, *, steps: int = 10, warmup: int = 2, count_flops: bool = True,
                  peak_tflops: float | None = None, source: str = "") -> BenchResult:
    """Time ``steps`` training steps after ``warmup`` untimed ones on a synthetic batch.

    Args:
        recipe: a resolved recipe (:func:`ganzoo.recipe.prepare_recipe`).
        steps: timed steps (the median is the headline figure).
        warmup: untimed steps first (allocator, oneDNN primitive caches, ``torch.compile``, an
            accelerator's own choices).
        count_flops: count one extra, untimed step under ``FlopCounterMode``.
        peak_tflops: the device's peak to compare with; None looks it up or estimates it.
        source: the recipe's file name, for the report.
    """
    if steps < 1:
        raise GanzooError(f"--steps must be at least 1, got {steps}")
    if warmup < 0:
        raise GanzooError(f"--warmup cannot be negative, got {warmup}")
    device = resolve_device(recipe.train.device)
    precision = recipe.train.precision
    parts = build_parts(recipe, device)
    batch = synthetic_batch(recipe, parts.model, device, seed=recipe.train.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        parts.step(batch)
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        parts.step(batch)
        _sync(device)
        times.append(time.perf_counter() - start)
    memory, memory_kind = peak_memory(device)
    flops = 0
    if count_flops:
        counter = FlopCounterMode(display=False)
        with counter:
            parts.step(batch)
        flops = counter.get_total_flops()
    if peak_tflops is not None:
        peak, peak_source = peak_tflops, "given (--peak-tflops)"
    else:
        peak, peak_source = device_peak_tflops(device, precision)
    return BenchResult(
        recipe=source or recipe.name, model=recipe.model.type,
        device=_device_name(device), precision=precision, threads=torch.get_num_threads(),
        batch_size=recipe.train.batch_size, image_size=recipe.data.crop_size,
        steps=steps, warmup=warmup, step_seconds=times, peak_memory_bytes=memory, memory_kind=memory_kind,
        flops_per_step=flops, peak_tflops=peak, peak_source=peak_source,
        channels_last=recipe.train.channels_last, compiled=recipe.train.compile,
        accelerators=list(parts.accelerators),
        warning=parts.updater.warning,
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
