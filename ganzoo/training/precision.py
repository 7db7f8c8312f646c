"""Mixed precision as a recipe switch (``train.precision: fp32 | bf16 | fp16``).

bf16 runs the forward passes under autocast (CUDA, and CPUs with bf16 support); fp16 (CUDA only)
adds one GradScaler per update group, so the G/E step and each D step scale their own losses.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

from ganzoo.errors import RecipeError

PRECISIONS = ("fp32", "bf16", "fp16")


class Precision:
    """Autocast and loss scaling for one training run."""

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise RecipeError("train.precision", f"{precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise RecipeError("train.precision", "fp16 needs a CUDA device; use bf16 on the CPU",
                              hint="set train.precision=bf16")
        self.precision = precision
        self.device = device
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def scaler(self, group: str) -> torch.amp.GradScaler | None:
        if self.precision != "fp16":
            return None
        if group not in self.scalers:
            self.scalers[group] = torch.amp.GradScaler(self.device.type)
        return self.scalers[group]

    def backward(self, loss: torch.Tensor, group: str) -> None:
        scaler = self.scaler(group)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, optimizers: Iterable[torch.optim.Optimizer], group: str) -> None:
        scaler = self.scaler(group)
        for opt in optimizers:
            if scaler is not None:
                scaler.step(opt)
            else:
                opt.step()
        if scaler is not None:
            scaler.update()

    def state_dict(self) -> dict:
        return {name: s.state_dict() for name, s in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, s in state.items():
            scaler = self.scaler(name)
            if scaler is not None:
                scaler.load_state_dict(s)
