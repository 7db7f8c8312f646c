"""The device a run uses and how: ``train.device: auto | cpu | cuda | cuda:N`` (or a command's
``--device``), the CUDA kernel settings a recipe asks for, and the device a checkpoint was written on."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ganzoo.errors import RecipeError

if TYPE_CHECKING:
    from ganzoo.recipe.schema import Recipe


def resolve_device(spec: str = "auto", key: str = "train.device") -> torch.device:
    """The device ``spec`` names; ``auto`` is CUDA when present, else the CPU.

    ``key`` is where the value came from (``train.device``, or ``--device`` on the command line),
    which an error names. Other backends (MPS, XPU...) are not supported.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choices = "auto, cpu, cuda or cuda:N"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise RecipeError(key, f"{spec!r} is not a device; use {choices}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            fix = "--device cpu" if key.startswith("--") else f"{key}=auto (CUDA when present, else CPU) or cpu"
            raise RecipeError(key, f"is {spec!r}, but no CUDA device is available here", hint=f"use {fix}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RecipeError(key, f"{spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise RecipeError(key, f"{spec!r} is not supported; use {choices}")
    return device


@dataclass(frozen=True)
class KernelFlags:
    """The CUDA kernel settings of a run: ``torch.backends.cudnn.benchmark``, ``cudnn.deterministic``
    and ``torch.use_deterministic_algorithms``."""

    cudnn_benchmark: bool
    deterministic: bool


def kernel_flags(recipe: Recipe) -> KernelFlags:
    """The kernel settings a recipe asks for (a pure function of the recipe; applied on CUDA only).

    ``train.deterministic`` turns autotuning off and deterministic kernels on. Otherwise
    ``train.cudnn_benchmark`` decides; left null, cuDNN autotunes (as the official code always does)
    when every image reaches the networks at one size: a cropping ``data.preprocess`` or the
    generated shapes world. With sizes that vary (``scale_width``, ``none`` on a folder of images)
    each new shape would be timed again, which costs more than it saves.
    """
    from ganzoo.recipe.resolve import network_input_size

    train, data = recipe.train, recipe.data
    if train.deterministic:
        return KernelFlags(cudnn_benchmark=False, deterministic=True)
    if train.cudnn_benchmark is not None:
        return KernelFlags(cudnn_benchmark=bool(train.cudnn_benchmark), deterministic=False)
    fixed = network_input_size(data) is not None and (data.preprocess != "scale_width" or data.shapes is not None)
    return KernelFlags(cudnn_benchmark=fixed, deterministic=False)


def configure_kernels(device: torch.device, flags: KernelFlags) -> None:
    """Apply :func:`kernel_flags` for a run on ``device``; nothing changes off CUDA (CPU kernels are
    deterministic for a fixed thread count)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = flags.cudnn_benchmark
    torch.backends.cudnn.deterministic = flags.deterministic
    if flags.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    torch.use_deterministic_algorithms(flags.deterministic, warn_only=False)


def stored_device(payload: dict[str, Any]) -> str | None:
    """The device a checkpoint was written on: as recorded, else its recipe's explicit ``train.device``
    (None when unknown: an older checkpoint of a ``train.device: auto`` run)."""
    device = payload.get("device")
    if isinstance(device, str) and device:
        return device_name(device)
    recipe = payload.get("recipe")
    train = recipe.get("train") if isinstance(recipe, dict) else None
    spec = train.get("device") if isinstance(train, dict) else None
    if isinstance(spec, str) and spec not in ("", "auto"):
        return device_name(spec)
    return None


def device_name(device: torch.device | str) -> str:
    """``cuda:N`` or ``cpu``: a bare ``cuda`` is the first GPU (as a single-process run uses it)."""
    text = str(device)
    return "cuda:0" if text == "cuda" else text
