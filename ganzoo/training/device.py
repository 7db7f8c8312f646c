"""Explicit device choice: ``train.device: auto | cpu | cuda | cuda:N`` (or a command's ``--device``)."""
from __future__ import annotations

import torch

from ganzoo.errors import RecipeError


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
