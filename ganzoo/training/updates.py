"""The update of a training step: from a model's loss for one update group to new weights.

Precision is a recipe switch (``train.precision: fp32 | bf16 | fp16``): bf16 runs the forward
passes under autocast (CUDA, and CPUs with bf16 support); fp16 (CUDA only) adds one GradScaler per
update group, so the G/E step and each D step scale their own losses.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

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
        # GradScaler's fused check (unscaling by exactly 1 leaves every value as it is): one pass
        # over the gradients, far cheaper than a max-abs norm.
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


class Updater:
    """How a model's losses become parameter updates; the Trainer owns one per run.

    A model's ``train_step`` computes each update group's loss under :meth:`autocast` and calls
    :meth:`update` with it, in the official order. Everything about *how* the update happens is
    decided here, from the recipe's ``train`` section: the precision (autocast, one GradScaler per
    group under fp16), the non-finite policy (``train.nonfinite``: no update follows a NaN/inf
    gradient; refused groups are listed in :attr:`skipped`), updates inside the backward
    (``train.step_in_backward``) and the gradients data parallelism averages.

    Args:
        optimizers: update group -> its optimizer (``train.optimizer`` / ``train.optimizers``).
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device: where the networks live.
        step_in_backward: update each parameter as its gradient completes, where the update allows it
            (fused Adam/AdamW, no loss scaler, one process, ``nonfinite: stop``).
        guard_nonfinite: check gradients before applying them.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], precision: str, device: torch.device, *,
                 step_in_backward: bool = False, guard_nonfinite: bool = True) -> None:
        if precision not in PRECISIONS:
            raise RecipeError("train.precision", f"{precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise RecipeError("train.precision", "fp16 needs a CUDA device; use bf16 on the CPU",
                              hint="set train.precision=bf16")
        self.optimizers = optimizers
        self.precision = precision
        self.device = device
        self.step_in_backward = step_in_backward
        self.guard_nonfinite = guard_nonfinite
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.skipped: list[str] = []

    @property
    def warning(self) -> str | None:
        """Why this precision will likely be slow here, or None."""
        if self.precision == "bf16" and self.device.type == "cpu" and cpu_has_bf16_hardware() is False:
            return ("train.precision=bf16: this CPU has no bf16 hardware (AVX512-BF16 or AMX), so bf16 is "
                    "emulated and usually slower than fp32 here; train.precision=fp32 is the fast choice")
        return None

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward passes' precision (nothing under fp32)."""
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

    def begin_step(self) -> None:
        """Free every group's gradients of the last step before the first forward of this one.

        Zeroing each group just before its own backward would leave a later group's old gradients
        alive through an earlier group's backward, the step's peak of memory."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def update(self, groups: str | Sequence[str], loss: torch.Tensor) -> None:
        """Backward ``loss`` and update the parameters of one update group, or of several that one
        loss trains together (BicycleGAN's G and E): inside the backward as gradients complete
        where allowed; else after it, refused when a gradient is non-finite (``guard_nonfinite``)
        or left to the groups' GradScaler (fp16)."""
        names = [groups] if isinstance(groups, str) else list(groups)
        group = "+".join(names)
        optimizers = [self.optimizers[name] for name in names]
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

    def state_dict(self) -> dict[str, Any]:
        return {name: s.state_dict() for name, s in self.scalers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, s in state.items():
            scaler = self.scaler(name)
            if scaler is not None:
                scaler.load_state_dict(s)
