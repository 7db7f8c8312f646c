"""train.scheduler.warmup_steps around any scheduler (the learning-rate curve, exact resume, the recipe key)
and the TTUR recipe variants."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import ganzoo
from fault_injection import SHAPES_PAIRED, tiny_recipe
from ganzoo.cli.app import main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import RecipeError
from ganzoo.recipe import prepare_recipe, resolve_recipe
from ganzoo.schedulers import WarmupScheduler, with_warmup
from ganzoo.training.checkpoint import load_checkpoint
from ganzoo.training.trainer import Trainer, TrainingInterrupted
from helpers import RECIPES, assert_identical


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _warm(name: str, warmup: int, lr: float = 1.0, **kwargs: object) -> tuple[torch.optim.Optimizer, WarmupScheduler]:
    opt = _optimizer(lr)
    return opt, with_warmup(ganzoo.build("scheduler", name, optimizer=opt, **kwargs), warmup)


def _lrs(sched: object, opt: torch.optim.Optimizer, steps: int, metric: float | None = None) -> list[float]:
    """The learning rate each of ``steps`` training steps runs at."""
    used = []
    for _ in range(steps):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(*([] if metric is None else [metric]))
    return used


def test_linear_with_warm_up() -> None:
    opt, sched = _warm("linear", 4, total_steps=12, decay_steps=4)
    # 1/4, 2/4, 3/4 of the rate, then the official rule unchanged: 8 constant steps, a decay over the last 4
    assert _lrs(sched, opt, 12) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2])


def test_cosine_with_warm_up_scales_the_cosine_it_would_follow() -> None:
    opt, sched = _warm("cosine", 3, lr=0.1, total_steps=8)
    cosine = [0.05 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    expected = [c * min(1.0, (k + 1) / 3) for k, c in enumerate(cosine)]
    assert _lrs(sched, opt, 8) == pytest.approx(expected)


def test_a_chained_rule_never_sees_the_warm_up() -> None:
    opt, sched = _warm("step", 5, total_steps=12, step_size=3, gamma=0.5)
    # StepLR multiplies the rate it finds: it must find its own (1.0), not the warmed-up one
    assert _lrs(sched, opt, 9) == pytest.approx([0.2, 0.4, 0.6, 0.4, 0.5, 0.5, 0.25, 0.25, 0.25])


def test_plateau_with_warm_up_takes_the_metric() -> None:
    opt, sched = _warm("plateau", 2, total_steps=100)
    assert sched.needs_metric
    used = _lrs(sched, opt, 9, metric=1.0)  # one best value, then no progress: reduced after patience 5
    assert used == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2])


def test_no_warm_up_leaves_the_scheduler_as_it_is() -> None:
    opt = _optimizer()
    sched = ganzoo.build("scheduler", "linear", optimizer=opt, total_steps=4)
    assert with_warmup(sched, 0) is sched


@pytest.mark.parametrize("name", ["linear", "step", "cosine", "plateau"])
def test_state_dict_resumes_inside_and_after_the_warm_up(name: str) -> None:
    metric = 1.0 if name == "plateau" else None
    for split in (2, 6):  # during the warm-up, after it
        opt_a, sched_a = _warm(name, 4, lr=0.1, total_steps=12)
        _lrs(sched_a, opt_a, split, metric)
        saved_opt, saved = opt_a.state_dict(), sched_a.state_dict()
        expected = _lrs(sched_a, opt_a, 12 - split, metric)
        opt_b, sched_b = _warm(name, 4, lr=0.1, total_steps=12)
        opt_b.load_state_dict(saved_opt)
        sched_b.load_state_dict(saved)
        assert _lrs(sched_b, opt_b, 12 - split, metric) == pytest.approx(expected)


def test_a_state_without_warm_up_is_refused() -> None:
    opt, sched = _warm("linear", 3, total_steps=10)
    plain = ganzoo.build("scheduler", "linear", optimizer=_optimizer(), total_steps=10)
    with pytest.raises(ValueError, match="without train.scheduler.warmup_steps"):
        sched.load_state_dict(plain.state_dict())


# -- the recipe key --------------------------------------------------------------------------------------
def test_the_recipe_key_takes_any_scheduler_and_defaults_to_zero(tmp_path: Path) -> None:
    recipe = tiny_recipe("pix2pix", tmp_path)
    assert resolve_recipe(recipe).train.scheduler["warmup_steps"] == 0
    recipe["train"]["scheduler"] = {"type": "cosine", "warmup_steps": 5}
    assert dict(resolve_recipe(recipe).train.scheduler) == {"type": "cosine", "eta_min": 0.0, "warmup_steps": 5}


@pytest.mark.parametrize("value, message", [(-1, "must be >= 0"), (2.5, "expected an integer"),
                                            ("ten", "expected an integer")])
def test_bad_warm_up_names_its_key(tmp_path: Path, value: object, message: str) -> None:
    recipe = tiny_recipe("pix2pix", tmp_path)
    recipe["train"]["scheduler"] = {"type": "step", "warmup_steps": value}
    with pytest.raises(RecipeError, match=rf"train\.scheduler\.warmup_steps: {message}"):
        resolve_recipe(recipe)


def test_set_accepts_the_key_for_any_scheduler() -> None:
    recipe = prepare_recipe(RECIPES / "quickstart_pix2pix.yaml",
                            ["train.scheduler={type: step}", "train.scheduler.warmup_steps=7"])
    assert recipe.train.scheduler["type"] == "step" and recipe.train.scheduler["warmup_steps"] == 7


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warmup")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    return root / "paired"


def test_training_follows_the_warm_up_and_resumes_exactly(data: Path, tmp_path: Path) -> None:
    def recipe() -> object:
        raw = tiny_recipe("pix2pix", data, max_steps=6, scheduler={"type": "linear", "warmup_steps": 4})
        raw["train"]["optimizers"] = {"D": {"lr": 0.004}}  # TTUR-style: D faster than G (0.001)
        return resolve_recipe(raw)

    straight = Trainer(recipe(), tmp_path / "straight", show_progress=False)
    seen: list[tuple[float, float]] = []
    inner = straight.parts.step

    def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seen.append((straight.optimizers["G"].param_groups[0]["lr"], straight.optimizers["D"].param_groups[0]["lr"]))
        return inner(batch)

    straight.parts.step = step  # type: ignore[method-assign]
    straight.run()
    # 6 steps: 3 constant, then the official decay over 3 (3/4, 2/4, 1/4); the warm-up scales the first 3
    g = [0.001 * f for f in (1 / 4, 2 / 4, 3 / 4, 3 / 4, 2 / 4, 1 / 4)]
    assert [s[0] for s in seen] == pytest.approx(g)
    assert [s[1] for s in seen] == pytest.approx([4 * x for x in g])

    interrupted = Trainer(recipe(), tmp_path / "resumed", show_progress=False)
    inner_b = interrupted.parts.step

    def stop(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = inner_b(batch)
        if interrupted.step == 1:
            interrupted.request_stop()
        return losses

    interrupted.parts.step = stop  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        interrupted.run()
    Trainer(recipe(), tmp_path / "resumed", resume=True, show_progress=False).run()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    for part in ("networks", "optimizers", "schedulers"):
        assert_identical(a[part], b[part], part)


# -- TTUR recipes ------------------------------------------------------------------------------------------
TTUR = {"pix2pix_facades": {"D": 4e-4, "G": 1e-4},
        "cyclegan_horse2zebra": {"D": 4e-4, "G": 1e-4},
        "bicyclegan_shoes": {"D": 4e-4, "D2": 4e-4, "G": 1e-4, "E": 1e-4}}


@pytest.mark.parametrize("name", sorted(TTUR))
def test_ttur_recipes_resolve_with_every_update_group(name: str) -> None:
    recipe = prepare_recipe(RECIPES / "ttur" / f"{name}.yaml")
    official = prepare_recipe(RECIPES / f"{name}.yaml")
    assert recipe.name == f"{name}_ttur"
    from ganzoo.registry import get_component

    groups = get_component("model", recipe.model.type).factory.update_groups(recipe.model)
    assert set(recipe.train.optimizers) == set(groups)  # every group named: none left at the shared rate
    assert {g: opt["lr"] for g, opt in recipe.train.optimizers.items()} == TTUR[name]
    assert all(tuple(opt["betas"]) == (0.5, 0.999) for opt in recipe.train.optimizers.values())
    # nothing but the learning rates differs from the official recipe
    ours = {**recipe.to_dict(), "name": None}
    theirs = {**official.to_dict(), "name": None}
    ours["train"] = {**ours["train"], "optimizers": None}
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(TTUR))
def test_ganzoo_info_shows_the_ttur_rates(name: str) -> None:
    result = CliRunner().invoke(main, ["info", str(RECIPES / "ttur" / f"{name}.yaml")])
    assert result.exit_code == 0, result.output
    assert "lr: 0.0004" in result.output and "lr: 0.0001" in result.output
