"""Learning-rate schedulers: the official rules, counted in steps, and exact resume."""
from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler

import ganzoo
from ganzoo.errors import ComponentError

SCHEDULERS = ganzoo.list_components("scheduler")["scheduler"]


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(sched: lr_scheduler.LRScheduler, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    """The LR used by each of ``steps`` training steps."""
    used = []
    for _ in range(steps):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return used


def test_builtin_schedulers_are_registered() -> None:
    assert {"linear", "step", "plateau", "cosine"} <= set(SCHEDULERS)


def test_linear_keeps_lr_then_decays_as_officially() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=10, decay_steps=4)
    used = _lrs(sched, opt, 10)
    # 6 constant steps, then 1 - k / (decay_steps + 1) for k = 1..4
    assert used == pytest.approx([1.0] * 6 + [0.8, 0.6, 0.4, 0.2])


def test_linear_defaults_to_decaying_over_the_second_half() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=8)
    used = _lrs(sched, opt, 8)
    assert used[:4] == [1.0] * 4
    assert used[4:] == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_linear_without_decay_is_constant() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=5, decay_steps=0)
    assert _lrs(sched, opt, 5) == [1.0] * 5


def test_linear_end_factor_stops_the_decay_part_way() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=10, decay_steps=4, end_factor=0.5)
    # the official rule's steps, scaled to fall from 1 towards 0.5 instead of 0
    assert _lrs(sched, opt, 10) == pytest.approx([1.0] * 6 + [0.9, 0.8, 0.7, 0.6])


def test_linear_end_factor_is_the_longer_schedule_stopped_early() -> None:
    """9000 steps with end_factor 0.375 follow the 12000-step schedule's learning rates step for step."""
    short_opt, long_opt = _optimizer(), _optimizer()
    short = ganzoo.build("scheduler", "linear", optimizer=short_opt, total_steps=9000, decay_steps=5000,
                         end_factor=0.375)
    longer = ganzoo.build("scheduler", "linear", optimizer=long_opt, total_steps=12000, decay_steps=8000)
    assert _lrs(short, short_opt, 9000) == pytest.approx(_lrs(longer, long_opt, 9000), abs=1e-4)


def test_linear_end_factor_survives_a_state_dict_round_trip() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=10, decay_steps=4, end_factor=0.5)
    _lrs(sched, opt, 3)
    fresh_opt = _optimizer()
    fresh = ganzoo.build("scheduler", "linear", optimizer=fresh_opt, total_steps=10, decay_steps=4)
    fresh.load_state_dict(sched.state_dict())
    assert fresh.lr_lambdas[0].end_factor == 0.5


@pytest.mark.parametrize("end_factor", [-0.1, 1.5, "half", True])
def test_linear_rejects_bad_end_factor(end_factor: object) -> None:
    with pytest.raises(ComponentError, match="end_factor must be a number between 0 and 1"):
        ganzoo.build("scheduler", "linear", optimizer=_optimizer(), total_steps=10, end_factor=end_factor)


@pytest.mark.parametrize("decay_steps", [-1, 11, 2.5])
def test_linear_rejects_bad_decay_steps(decay_steps: object) -> None:
    with pytest.raises(ComponentError, match="decay_steps"):
        ganzoo.build("scheduler", "linear", optimizer=_optimizer(), total_steps=10, decay_steps=decay_steps)


def test_step_decays_by_gamma() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "step", optimizer=opt, total_steps=9, step_size=3)
    assert _lrs(sched, opt, 9) == pytest.approx([1.0] * 3 + [0.1] * 3 + [0.01] * 3)


def test_step_default_size_is_half_the_run() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "step", optimizer=opt, total_steps=6, gamma=0.5)
    assert _lrs(sched, opt, 6) == pytest.approx([1.0] * 3 + [0.5] * 3)


def test_plateau_uses_official_settings_and_a_metric() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "plateau", optimizer=opt, total_steps=100)
    assert isinstance(sched, lr_scheduler.ReduceLROnPlateau)
    assert (sched.factor, sched.threshold, sched.patience, sched.mode) == (0.2, 0.01, 5, "min")
    for _ in range(7):  # one best value, then 6 steps without progress > patience 5
        sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


def test_cosine_anneals_to_zero_over_the_run() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "cosine", optimizer=opt, total_steps=4)
    used = _lrs(sched, opt, 4)
    assert used == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_rejects_non_positive_total_steps(name: str) -> None:
    with pytest.raises(ComponentError, match="total_steps"):
        ganzoo.build("scheduler", name, optimizer=_optimizer(), total_steps=0)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_state_dict_round_trip_resumes_exactly(name: str) -> None:
    def make() -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler]:
        opt = _optimizer(0.1)
        return opt, ganzoo.build("scheduler", name, optimizer=opt, total_steps=12)

    def advance(opt: torch.optim.Optimizer, sched: lr_scheduler.LRScheduler, steps: int) -> list[float]:
        used = []
        for i in range(steps):
            used.append(opt.param_groups[0]["lr"])
            opt.step()
            if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
                sched.step(1.0 + 0.001 * i)  # a stalled metric, so the LR actually moves
            else:
                sched.step()
        return used

    opt_a, sched_a = make()
    advance(opt_a, sched_a, 4)
    saved_sched, saved_opt = sched_a.state_dict(), opt_a.state_dict()
    expected = advance(opt_a, sched_a, 8)

    opt_b, sched_b = make()
    opt_b.load_state_dict(saved_opt)
    sched_b.load_state_dict(saved_sched)
    assert advance(opt_b, sched_b, 8) == pytest.approx(expected)
    assert len(set(expected)) > 1  # the resumed part really crosses an LR change


def test_linear_state_dict_carries_its_rule() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=10, decay_steps=4)
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"constant_steps": 6, "decay_steps": 4, "end_factor": 0.0}]
