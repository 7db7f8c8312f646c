"""Mixed precision as a recipe switch (``train.precision: fp32 | bf16 | fp16``).

bf16 runs the forward passes under autocast (CUDA, and CPUs with bf16 support); fp16 (CUDA only)
adds one GradScaler per update group, so the G/E step and each D step scale their own losses.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

from ganzoo.errors import RecipeError
from ganzoo.training.steps_in_backward import StepsInBackward, steps_fit_in_backward

PRECISIONS = ("fp32", "bf16", "fp16")


def grads_are_finite(optimizers: Iterable[torch.optim.Optimizer]) -> bool:
    """Whether every gradient the optimizers would apply is finite (one sync per device)."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    by_device.setdefault(p.grad.device, []).append(p.grad)
    found_nonfinite = False
    for device, grads in by_device.items():
        # GradScaler's fused check (unscaling by exactly 1 leaves every value as it is): one pass over
        # the gradients, about 15x cheaper on the CPU than the max-abs norm it replaces.
        found = torch.zeros(1, device=device)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones(1, device=device))
        found_nonfinite = found_nonfinite or bool(found.item())
    return not found_nonfinite


def cpu_has_bf16_hardware() -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); None when torch cannot tell."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None
    found = capabilities()
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


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
        # Set by the trainer (``train.nonfinite``): refuse updates whose gradients hold NaN/inf, which
        # would poison the weights and the optimizer moments for good; refused groups are listed in
        # ``skipped`` until the trainer reads them. fp16 leaves this to its GradScaler.
        self.guard_nonfinite = False
        self.skipped: list[str] = []
        # ``train.step_in_backward``, set by ``apply_speed_switches``; off for DistributedDataParallel
        # and ``train.nonfinite: skip`` (see :mod:`ganzoo.training.steps_in_backward`)
        self.step_in_backward = False

    @property
    def warning(self) -> str | None:
        """Why this precision will likely be slow here, or None."""
        if self.precision == "bf16" and self.device.type == "cpu" and cpu_has_bf16_hardware() is False:
            # oneDNN then converts to and from fp32 around every kernel: 1.6x slower than fp32 on an
            # AVX-512 Xeon without AVX512-BF16 (pix2pix_128, docs/performance.md).
            return ("train.precision=bf16: this CPU has no bf16 hardware (AVX512-BF16 or AMX), so bf16 is "
                    "emulated and usually slower than fp32 here; train.precision=fp32 is the fast choice")
        return None

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

    def update(self, loss: torch.Tensor, optimizers: Iterable[torch.optim.Optimizer], group: str) -> None:
        """Backward ``loss`` and update the parameters of ``optimizers`` (the update group ``group``):
        inside the backward as gradients complete, under ``step_in_backward`` where the update
        allows it; else after it, refused when a gradient is non-finite (``guard_nonfinite``) or
        left to the group's GradScaler (fp16)."""
        optimizers = list(optimizers)
        scaler = self.scaler(group)
        if scaler is None and self.step_in_backward and steps_fit_in_backward(optimizers):
            with StepsInBackward(optimizers, check_finite=self.guard_nonfinite) as steps:
                loss.backward()
            if steps.found_nonfinite:
                self.skipped.append(group)
            return
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is None and self.guard_nonfinite and not grads_are_finite(optimizers):
            self.skipped.append(group)
            return
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
