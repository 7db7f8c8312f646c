"""The update of a training step: from a model's loss for one update group to new weights.

Precision is a recipe switch (``train.precision: fp32 | bf16 | fp16``): bf16 runs the forward
passes under autocast (CUDA, and CPUs with bf16 support); fp16 (CUDA only) adds one GradScaler per
update group, so the G/E step and each D step scale their own losses.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from ganzoo.errors import RecipeError
from ganzoo.training.steps_in_backward import StepsInBackward, flag_nonfinite, steps_fit_in_backward

PRECISIONS = ("fp32", "bf16", "fp16")

#: One update group's forward pass: returns its loss.
Forward = Callable[[], torch.Tensor]
#: How :meth:`Updater.update_independent` runs its updates: given them and the function that runs
#: one (forward, backward, step; it returns the loss), it returns every group's loss.
IndependentRunner = Callable[[Mapping[str, Forward], Callable[[str, Forward], torch.Tensor]], dict[str, torch.Tensor]]


def run_in_order(updates: Mapping[str, Forward], run_one: Callable[[str, Forward], torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
    """The default :data:`IndependentRunner`: one update after the other, in the given order."""
    return {group: run_one(group, forward) for group, forward in updates.items()}


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
        found = torch.zeros(1, device=device)
        flag_nonfinite(grads, found)
        found_nonfinite = found_nonfinite or bool(found.item())
    return not found_nonfinite


def cpu_has_bf16_hardware() -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); None when torch cannot tell."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None
    found = capabilities()
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


@dataclass(frozen=True)
class NonFinite:
    """What :meth:`Updater.nonfinite_report` found: the first step with a NaN/inf loss, gradient or
    running statistic, and the losses that were non-finite at some step since."""

    step: int
    losses: tuple[str, ...]


class Updater:
    """How a model's losses become parameter updates; the Trainer owns one per run.

    A model's ``train_step`` computes each update group's loss under :meth:`autocast` and calls
    :meth:`update` with it, in the official order. Everything about *how* the update happens is
    decided here, from the recipe's ``train`` section: the precision (autocast, one GradScaler per
    group under fp16), updates inside the backward (``train.step_in_backward``), and the non-finite
    policy (``train.nonfinite``):

    - ``stop``: every gradient is checked, on the device, into one sticky flag that the fused
      optimizers read on the device: from the first NaN/inf gradient, loss (:meth:`end_step`) or
      running statistic on, no parameter is updated. Nothing waits for the device; the Trainer reads
      the flag (:meth:`nonfinite_report`) when it logs and before every checkpoint, and stops.
    - ``skip``: each update group's gradients are checked after its backward (one sync per group)
      and a group with a NaN/inf gradient is not updated that step; refused groups are listed in
      :attr:`skipped` until the Trainer reads them.

    Args:
        optimizers: update group -> its optimizer (``train.optimizer`` / ``train.optimizers``).
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device: where the networks live.
        step_in_backward: update each parameter as its gradient completes, where the update allows it
            (fused Adam/AdamW, no loss scaler, one process, ``nonfinite: stop``).
        nonfinite: ``stop`` or ``skip``.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], precision: str, device: torch.device, *,
                 step_in_backward: bool = False, nonfinite: str = "stop") -> None:
        if precision not in PRECISIONS:
            raise RecipeError("train.precision", f"{precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise RecipeError("train.precision", "fp16 needs a CUDA device; use bf16 on the CPU",
                              hint="set train.precision=bf16")
        self.optimizers = optimizers
        self.precision = precision
        self.device = device
        self.step_in_backward = step_in_backward and nonfinite == "stop"
        self.deferred = nonfinite == "stop"
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.skipped: list[str] = []
        # nonfinite: stop: sticky, on the device; the step it was first set, and which losses were bad
        self._nonfinite = torch.zeros(1, device=device)
        self._first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self._loss_names: tuple[str, ...] = ()
        self._bad_losses: torch.Tensor | None = None
        #: How :meth:`update_independent` runs its updates; an accelerator's ``prepare_updater`` may replace it.
        self.run_independent: IndependentRunner = run_in_order

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
        loss trains together (BicycleGAN's G and E), as the class docstring describes."""
        names = [groups] if isinstance(groups, str) else list(groups)
        group = "+".join(names)
        optimizers = [self.optimizers[name] for name in names]
        scaler = self.scaler(group)
        if scaler is not None:  # GradScaler skips non-finite steps itself
            scaler.scale(loss).backward()
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
            return
        if self.step_in_backward and steps_fit_in_backward(optimizers):
            with StepsInBackward(optimizers, nonfinite=self._nonfinite):
                loss.backward()
            return
        loss.backward()
        if not self.deferred:
            if grads_are_finite(optimizers):
                for opt in optimizers:
                    opt.step()
            else:
                self.skipped.append(group)
            return
        flag_nonfinite([p.grad for opt in optimizers for g in opt.param_groups for p in g["params"]
                        if p.grad is not None], self._nonfinite)
        if all(steps_fit_in_backward([opt]) for opt in optimizers):  # fused kernels read the flag on the device
            for opt in optimizers:
                opt.found_inf = self._nonfinite.view(())  # type: ignore[attr-defined]
                try:
                    opt.step()
                finally:
                    del opt.found_inf  # type: ignore[attr-defined]
        elif not bool(self._nonfinite.item()):  # other optimizers: one sync to decide
            for opt in optimizers:
                opt.step()

    def update_independent(self, updates: Mapping[str, Forward]) -> dict[str, torch.Tensor]:
        """Run updates that share no parameter and no loss (BicycleGAN's D and D2): for each group,
        its forward (under :meth:`autocast`), then :meth:`update`. The forwards must not draw random
        numbers. By default they run one after the other, in order (:func:`run_in_order`); an
        accelerator may set :attr:`run_independent` to run them side by side, which gives the same
        maths, since no update reads what another writes. Returns each group's loss."""
        return self.run_independent(updates, self._forward_and_update)

    def _forward_and_update(self, group: str, forward: Forward) -> torch.Tensor:
        with self.autocast():
            loss = forward()
        self.update(group, loss)
        return loss

    def end_step(self, step: int, losses: dict[str, torch.Tensor], buffers: Iterable[torch.Tensor]) -> None:
        """Fold step ``step``'s losses and running statistics into the non-finite flag (``stop``), on
        the device: a NaN/inf among them stops every later update too."""
        if not self.deferred:
            return
        names = tuple(losses)
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()]) if names else None
        if values is not None:
            bad = ~torch.isfinite(values)
            if names != self._loss_names or self._bad_losses is None:
                if self._bad_losses is not None:  # another set of terms: keep what was seen, by name
                    self._carry_bad_losses(names)
                else:
                    self._loss_names, self._bad_losses = names, bad
            else:
                self._bad_losses = self._bad_losses | bad
            self._nonfinite.copy_(torch.maximum(self._nonfinite, bad.any().float().reshape(1)))
        flag_nonfinite([b for b in buffers if torch.is_floating_point(b)], self._nonfinite)
        self._first_bad_step = torch.where((self._first_bad_step < 0) & (self._nonfinite[0] > 0),
                                           torch.full_like(self._first_bad_step, step), self._first_bad_step)

    def _carry_bad_losses(self, names: tuple[str, ...]) -> None:
        seen = set(self.bad_loss_names())
        self._loss_names = names
        self._bad_losses = torch.tensor([name in seen for name in names], device=self.device)

    def bad_loss_names(self) -> list[str]:
        if self._bad_losses is None:
            return []
        return [name for name, bad in zip(self._loss_names, self._bad_losses.tolist()) if bad]

    @property
    def nonfinite_flag(self) -> torch.Tensor:
        """The sticky one-element flag (``nonfinite: stop``), for data-parallel ranks to agree on."""
        return self._nonfinite

    def nonfinite_report(self) -> NonFinite | None:
        """Under ``nonfinite: stop``, whether anything became non-finite so far (one sync)."""
        if not self.deferred or not bool(self._nonfinite.item()):
            return None
        return NonFinite(int(self._first_bad_step.item()), tuple(self.bad_loss_names()))

    def state_dict(self) -> dict[str, Any]:
        return {name: s.state_dict() for name, s in self.scalers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, s in state.items():
            scaler = self.scaler(name)
            if scaler is not None:
                scaler.load_state_dict(s)
