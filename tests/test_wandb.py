"""log.wandb: a missing package is one clear line at start-up (exit 2, nothing written); with a (fake)
wandb module the same scalars as TensorBoard are logged, and a resumed run continues the same wandb run."""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fault_injection import SHAPES_PAIRED, tiny_recipe, write_recipe
from ganzoo.cli import main as ganzoo_main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import RecipeError
from ganzoo.recipe import resolve_recipe
from ganzoo.training.trainer import Trainer, TrainingInterrupted


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wandb")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    return root / "paired"


def wandb_recipe(data: Path, **train: Any) -> dict[str, Any]:
    raw = tiny_recipe("pix2pix", data, **{"max_steps": 4, **train})
    raw["log"]["wandb"] = {"project": "ganzoo-tests", "entity": "me", "mode": "offline"}
    return raw


@pytest.fixture()
def no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError


class FakeRun:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.id = kwargs.get("id") or "fake0001"
        self.logged: list[tuple[int, dict[str, float]]] = []
        self.finished = False

    def log(self, data: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(data)))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture()
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[FakeRun]:
    runs: list[FakeRun] = []
    module = types.ModuleType("wandb")

    def init(**kwargs: Any) -> FakeRun:
        runs.append(FakeRun(**kwargs))
        return runs[-1]

    module.init = init  # type: ignore[attr-defined]
    module.util = types.SimpleNamespace(generate_id=lambda: f"id{len(runs)}")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return runs


def test_the_recipe_section(data: Path) -> None:
    recipe = resolve_recipe(wandb_recipe(data))
    assert recipe.log.wandb.to_dict() == {"project": "ganzoo-tests", "entity": "me", "mode": "offline"}
    assert resolve_recipe(tiny_recipe("pix2pix", data)).log.wandb is None
    raw = wandb_recipe(data)
    raw["log"]["wandb"]["mode"] = "cloud"
    with pytest.raises(RecipeError, match=r"log\.wandb\.mode: 'cloud' is not one of: online, offline, disabled"):
        resolve_recipe(raw)


def test_a_missing_package_fails_at_start_up(data: Path, tmp_path: Path, no_wandb: None) -> None:
    with pytest.raises(RecipeError) as caught:
        Trainer(resolve_recipe(wandb_recipe(data)), tmp_path / "run", show_progress=False)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value) and "pip install wandb" in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_cli_says_it_in_one_line_with_exit_2_and_writes_nothing(data: Path, tmp_path: Path,
                                                                      no_wandb: None) -> None:
    path = write_recipe(wandb_recipe(data), tmp_path / "w.yaml")
    result = CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, ["train", str(path), "--out", str(tmp_path / "run"),
                                                                    "--no-progress"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "log.wandb: the wandb package is not installed: pip install wandb" in lines[0]
    assert not (tmp_path / "run").exists()


def test_scalars_reach_wandb_as_they_reach_tensorboard(data: Path, tmp_path: Path, fake_wandb: list[FakeRun]) -> None:
    run = tmp_path / "run"
    Trainer(resolve_recipe(wandb_recipe(data, eval_every=4, eval_metrics=["mode_coverage"])), run,
            show_progress=False).run()
    (wb,) = fake_wandb
    assert wb.kwargs["project"] == "ganzoo-tests" and wb.kwargs["entity"] == "me" and wb.kwargs["mode"] == "offline"
    assert wb.kwargs["name"] == "tiny_pix2pix" and wb.kwargs["config"]["train"]["max_steps"] == 4
    assert wb.kwargs["dir"] == str(run) and wb.finished
    steps = sorted({step for step, _ in wb.logged})
    assert steps == [2, 4]  # log.every 2
    tags = {tag for _, scalars in wb.logged for tag in scalars}
    assert {"loss/D", "loss/gan", "loss/l1", "loss/G_total", "lr/G", "lr/D"} <= tags
    assert "eval/mode_coverage.on_palette" in tags and "final/G_total" in tags
    # the same numbers TensorBoard got
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs"))
    events.Reload()
    for tag in ("loss/G_total", "lr/G", "eval/mode_coverage.on_palette"):
        board = {e.step: e.value for e in events.Scalars(tag)}
        ours = {step: scalars[tag] for step, scalars in wb.logged if tag in scalars}
        assert ours.keys() == board.keys() and all(ours[s] == pytest.approx(board[s]) for s in ours), tag
    assert (run / "wandb_run_id").read_text() == wb.id


def test_a_resumed_run_continues_the_same_wandb_run(data: Path, tmp_path: Path, fake_wandb: list[FakeRun]) -> None:
    run = tmp_path / "run"
    trainer = Trainer(resolve_recipe(wandb_recipe(data)), run, show_progress=False)
    inner = trainer.parts.step

    def stop(batch: Any) -> Any:
        losses = inner(batch)
        if trainer.step == 1:
            trainer.request_stop()
        return losses

    trainer.parts.step = stop  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    Trainer(resolve_recipe(wandb_recipe(data)), run, resume=True, show_progress=False).run()
    first, second = fake_wandb
    assert second.kwargs["id"] == first.id and second.kwargs["resume"] == "allow"
    assert first.finished and second.finished
