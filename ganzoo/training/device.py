"""Explicit device choice: ``train.device: auto | cpu | cuda | cuda:N``."""
from __future__ import annotations

import torch

from ganzoo.errors import RecipeError


def resolve_device(spec: str = "auto") -> torch.device:
    """The device a recipe asks for; ``auto`` is CUDA when present, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise RecipeError("train.device", f"{spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RecipeError("train.device", f"is {spec!r}, but no CUDA device is available here",
                              hint="use train.device=auto (CUDA when present, else CPU) or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RecipeError("train.device", f"{spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise RecipeError("train.device", f"{spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device
