"""Learning-rate schedules (``scheduler`` registry), stepped once after every training step.

Each is built as ``build("scheduler", name, optimizer=opt, total_steps=N, **kwargs)`` and returns
one of torch's own schedulers, so ``state_dict()``/``load_state_dict()`` resume it exactly. The
official code counts epochs; ganzoo counts optimisation steps, so sizes are given in steps.

``train.scheduler.warmup_steps`` puts a linear warm-up in front of any of them
(:class:`WarmupScheduler`, applied by the trainer, never by a scheduler itself).
"""
from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler

from ganzoo.errors import ComponentError
from ganzoo.registry import register


def _check_total_steps(name: str, total_steps: int) -> None:
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ComponentError(f"scheduler {name!r}: total_steps must be a positive integer, got {total_steps!r}")


class LinearDecayRule:
    """LR factor: 1 for ``constant_steps`` steps, then falling linearly towards ``end_factor`` (official: 0)
    over ``decay_steps``.

    A class rather than a closure so that ``LambdaLR.state_dict()`` stores its settings.
    """

    def __init__(self, constant_steps: int, decay_steps: int, end_factor: float = 0.0) -> None:
        self.constant_steps = constant_steps
        self.decay_steps = decay_steps
        self.end_factor = end_factor

    def __call__(self, step_index: int) -> float:
        # LambdaLR counts from 0; the official rule counts from 1 (its epoch_count), so the first
        # ``constant_steps`` steps keep the full LR and the last one runs at 1/(decay_steps + 1).
        step_number = step_index + 1
        progress = max(0, step_number - self.constant_steps) / float(self.decay_steps + 1)
        return 1.0 - (1.0 - self.end_factor) * progress


@register("scheduler", "linear")
def linear(optimizer: Optimizer, total_steps: int, decay_steps: int | None = None,
           end_factor: float = 0.0) -> lr_scheduler.LambdaLR:
    """Constant LR, then linear decay over the last decay_steps towards zero (official) or end_factor.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        total_steps: number of training steps of the whole run.
        decay_steps: length of the decay at the end of the run; default: the second half
            (the official ``niter`` = ``niter_decay``).
        end_factor: the fraction of the LR the decay heads for (official: 0). A run stopped part-way
            through a longer schedule is this schedule with ``end_factor`` > 0: 9000 steps of a
            12000-step schedule that decays over its last 8000 are ``decay_steps=5000, end_factor=0.375``.
    """
    _check_total_steps("linear", total_steps)
    if decay_steps is None:
        decay_steps = total_steps // 2
    if not isinstance(decay_steps, int) or not 0 <= decay_steps <= total_steps:
        raise ComponentError(
            f"scheduler 'linear': decay_steps must be an integer between 0 and total_steps={total_steps}, "
            f"got {decay_steps!r}"
        )
    if isinstance(end_factor, bool) or not isinstance(end_factor, (int, float)) or not 0.0 <= end_factor <= 1.0:
        raise ComponentError(f"scheduler 'linear': end_factor must be a number between 0 and 1, got {end_factor!r}")
    rule = LinearDecayRule(constant_steps=total_steps - decay_steps, decay_steps=decay_steps,
                           end_factor=float(end_factor))
    return lr_scheduler.LambdaLR(optimizer, lr_lambda=rule)


@register("scheduler", "step")
def step(optimizer: Optimizer, total_steps: int, step_size: int | None = None,
         gamma: float = 0.1) -> lr_scheduler.StepLR:
    """Multiply the LR by gamma every step_size steps.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        total_steps: number of training steps of the whole run.
        step_size: steps between two decays; default: half the run.
        gamma: multiplicative factor of each decay.
    """
    _check_total_steps("step", total_steps)
    if step_size is None:
        step_size = max(1, total_steps // 2)
    if not isinstance(step_size, int) or step_size < 1:
        raise ComponentError(f"scheduler 'step': step_size must be a positive integer, got {step_size!r}")
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@register("scheduler", "plateau")
def plateau(optimizer: Optimizer, total_steps: int, mode: str = "min", factor: float = 0.2,
            threshold: float = 0.01, patience: int = 5) -> lr_scheduler.ReduceLROnPlateau:
    """Divide the LR by 5 when a monitored metric stops improving; step it with the metric.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        total_steps: number of training steps of the whole run (unused; accepted for uniformity).
        mode: ``"min"`` when a lower metric is better, ``"max"`` otherwise.
        factor: multiplicative factor of each decay.
        threshold: relative improvement that counts as progress.
        patience: steps without progress before the LR is lowered.
    """
    _check_total_steps("plateau", total_steps)
    if mode not in ("min", "max"):
        raise ComponentError(f"scheduler 'plateau': mode must be 'min' or 'max', got {mode!r}")
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, threshold=threshold,
                                          patience=patience)


@register("scheduler", "cosine")
def cosine(optimizer: Optimizer, total_steps: int, eta_min: float = 0.0) -> lr_scheduler.CosineAnnealingLR:
    """Cosine annealing from the initial LR to eta_min over the whole run.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        total_steps: number of training steps of the whole run (the cosine half-period).
        eta_min: the final learning rate.
    """
    _check_total_steps("cosine", total_steps)
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)


class WarmupScheduler:
    """Any scheduler with a linear learning-rate warm-up in front (``train.scheduler.warmup_steps``).

    Step ``k`` of training (counted from 1) runs at ``min(1, k / warmup_steps)`` times the rate the
    wrapped scheduler gives it; the wrapped scheduler itself only ever sees its own, unscaled rates, so
    its rule (chained ones such as ``step`` and ``cosine``, or ``plateau``'s reductions) is the same
    with or without the warm-up. ``state_dict()`` holds the wrapped state, the step count and the
    unscaled rates: a resumed run continues both exactly.
    """

    def __init__(self, scheduler: Any, warmup_steps: int) -> None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ComponentError(f"warmup_steps must be a positive integer, got {warmup_steps!r}")
        self.scheduler = scheduler
        self.optimizer: Optimizer = scheduler.optimizer
        self.warmup_steps = warmup_steps
        self.steps_done = 0
        self._unscaled = [group["lr"] for group in self.optimizer.param_groups]
        self._apply()

    @property
    def needs_metric(self) -> bool:
        """Whether ``step`` wants the monitored value (a wrapped ``ReduceLROnPlateau``)."""
        return isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau)

    def factor(self) -> float:
        """The warm-up factor of the next training step."""
        return min(1.0, (self.steps_done + 1) / self.warmup_steps)

    def _apply(self) -> None:
        factor = self.factor()
        for group, lr in zip(self.optimizer.param_groups, self._unscaled):
            group["lr"] = lr * factor

    def step(self, *args: Any, **kwargs: Any) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._unscaled):
            group["lr"] = lr  # the wrapped rule reads and writes its own rates
        self.scheduler.step(*args, **kwargs)
        self._unscaled = [group["lr"] for group in self.optimizer.param_groups]
        self.steps_done += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "steps_done": self.steps_done, "unscaled": list(self._unscaled),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or "scheduler" not in state or "steps_done" not in state:
            raise ValueError("the state has no warm-up (it was saved without train.scheduler.warmup_steps)")
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps_done = int(state["steps_done"])
        self._unscaled = [float(lr) for lr in state["unscaled"]]
        self._apply()


def with_warmup(scheduler: Any, warmup_steps: int) -> Any:
    """``scheduler`` with a linear warm-up over ``warmup_steps`` steps (unchanged when 0)."""
    return WarmupScheduler(scheduler, warmup_steps) if warmup_steps else scheduler
