"""Watching a run: log.checkpoint_every_epochs, train.early_stop (a clean end that a resume knows about),
log.keep_best (checkpoints/best.pt), the models' declared loss names, and bad names as clear errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import ganzoo
from fault_injection import SHAPES_PAIRED, SHAPES_UNPAIRED, tiny_recipe, write_recipe
from ganzoo.cli import main as ganzoo_main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import RecipeError
from ganzoo.inference import build_model
from ganzoo.models.pix2pix import Pix2Pix
from ganzoo.recipe import resolve_recipe
from ganzoo.training.checkpoint import CheckpointDir, load_checkpoint
from ganzoo.training.monitor import EarlyStopping, classify
from ganzoo.training.run_lock import LOCK_FILE
from ganzoo.training.trainer import Trainer, TrainingInterrupted
from helpers import assert_identical


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    ensure_shapes(root / "unpaired", **SHAPES_UNPAIRED)
    return root


def recipe(data: Path, *, train: dict[str, Any] | None = None, log: dict[str, Any] | None = None,
           model: str = "pix2pix") -> dict[str, Any]:
    raw = tiny_recipe(model, data / ("unpaired" if model == "cyclegan" else "paired"), **(train or {}))
    raw["log"].update({"checkpoint_every": 1000, "keep_last": 10, **(log or {})})
    return raw


def train(raw: dict[str, Any], out: Path, **kwargs: Any) -> Any:
    return Trainer(resolve_recipe(raw), out, show_progress=False, **kwargs).run()


def invoke(args: list[str]) -> Any:
    return CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, args)


def steps(run: Path) -> list[int]:
    return [s for s, _ in CheckpointDir(run / "checkpoints").step_files()]


# -- log.checkpoint_every_epochs --------------------------------------------------------------------------
def test_a_checkpoint_at_the_end_of_every_n_epochs(data: Path, tmp_path: Path) -> None:
    # 8 items, batch 2: 4 steps an epoch; every 2 epochs -> step 8, then the final step 10
    train(recipe(data, log={"checkpoint_every_epochs": 2}), tmp_path / "run")
    assert steps(tmp_path / "run") == [8, 10]
    train(recipe(data, log={"checkpoint_every_epochs": 1, "checkpoint_every": 3}), tmp_path / "both")
    assert steps(tmp_path / "both") == [3, 4, 6, 8, 9, 10]
    assert resolve_recipe(recipe(data)).log.checkpoint_every_epochs is None


# -- train.early_stop on a loss -----------------------------------------------------------------------------
def stopping_recipe(data: Path, **early_stop: Any) -> dict[str, Any]:
    # min_delta that no real change beats: the second check is "no improvement", patience 1 stops there
    spec = {"watch": "G_total", "patience": 1, "min_delta": 1e9, **early_stop}
    return recipe(data, train={"early_stop": spec})


def test_early_stop_on_a_loss_is_a_clean_end(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(stopping_recipe(data), run)
    assert result.step == 4 and result.total_steps == 10  # log.every 2: checks at steps 2 and 4
    assert result.stopped_early and "G_total has not improved (min) for 1 log step" in result.stopped_early
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["stop_reason"] == result.stopped_early
    assert summary["step"] == 4
    final = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert final["step"] == 4 and final["milestone"] is True and final["stopped_early"] == result.stopped_early
    assert steps(run) == [4]


def test_a_resume_of_an_early_stopped_run_has_nothing_to_do(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(stopping_recipe(data), run)
    summary = (run / "summary.json").read_text()
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    result = invoke(["train", "--resume", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output and "stopped early: G_total has not improved" in result.output
    after = {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    assert after == before and (run / "summary.json").read_text() == summary
    # the Trainer itself knows too (the Python API): no step is taken, no checkpoint or summary rewritten
    again = Trainer(resolve_recipe(stopping_recipe(data)), run, resume=True, show_progress=False).run()
    assert again.step == 4 and again.stopped_early
    after = {p.name: p.stat().st_mtime_ns for p in run.rglob("*")
             if p.is_file() and p.name != LOCK_FILE and "tfevents" not in p.name}
    assert after == {k: v for k, v in before.items() if "tfevents" not in k}


def test_a_resumed_run_continues_the_patience_count_exactly(data: Path, tmp_path: Path) -> None:
    def raw() -> dict[str, Any]:
        return stopping_recipe(data, patience=3)  # checks at 2 (best), 4, 6, 8 -> stops at 8

    straight = train(raw(), tmp_path / "straight")
    assert straight.step == 8
    interrupted = Trainer(resolve_recipe(raw()), tmp_path / "resumed", show_progress=False)
    inner = interrupted.parts.step

    def stop(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = inner(batch)
        if interrupted.step == 4:  # the fifth step is under way: two checks are counted by now
            interrupted.request_stop()
        return losses

    interrupted.parts.step = stop  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        interrupted.run()
    resumed = Trainer(resolve_recipe(raw()), tmp_path / "resumed", resume=True, show_progress=False).run()
    assert resumed.step == 8 and resumed.stopped_early == straight.stopped_early
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    assert_identical(a["monitor"], b["monitor"], "monitor")
    assert_identical(a["networks"], b["networks"], "networks")


def test_the_loss_is_averaged_between_checks() -> None:
    stopper = EarlyStopping({"watch": "l1", "patience": 2, "mode": "min"})
    for value in (1.0, 3.0):
        stopper.loss_mean.add({"l1": torch.tensor(value)})
    assert stopper.loss_mean.read(stopper.key, ["l1"]) == pytest.approx(2.0)
    assert stopper.loss_mean.count == 0


# -- train.early_stop on an evaluation score, log.keep_best ------------------------------------------------
def evaluating(data: Path, **train_keys: Any) -> dict[str, Any]:
    return recipe(data, train={"eval_every": 2, "eval_metrics": ["mode_coverage"], **train_keys})


def test_early_stop_on_an_evaluation_score(data: Path, tmp_path: Path) -> None:
    raw = evaluating(data, early_stop={"watch": "mode_coverage.on_palette", "mode": "max", "patience": 1,
                                       "min_delta": 10.0})
    result = train(raw, tmp_path / "run")
    assert result.step == 4 and "mode_coverage.on_palette has not improved (max) for 1 evaluation" in result.stopped_early
    assert len((tmp_path / "run" / "eval.jsonl").read_text().splitlines()) == 2


def test_keep_best_writes_best_pt_from_the_evaluations(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    raw = evaluating(data)
    raw["log"]["keep_best"] = {"metric": "mode_coverage.on_palette", "mode": "max"}
    result = train(raw, run)
    evaluations = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    scores = [(e["metrics"]["mode_coverage"]["on_palette"], e["step"]) for e in evaluations]
    best_value = max(v for v, _ in scores)
    best_step = next(s for v, s in scores if v == best_value)  # the first evaluation reaching it
    payload = load_checkpoint(run / "checkpoints" / "best.pt")
    assert payload["best"] == {"metric": "mode_coverage.on_palette", "mode": "max", "value": best_value,
                               "step": best_step}
    assert payload["step"] == best_step and payload["light"] is True
    assert json.loads((run / "summary.json").read_text())["best"]["step"] == best_step
    assert steps(run) == [result.step]  # best.pt is not a step file: retention never touches it
    model = ganzoo.load(run / "checkpoints" / "best.pt", device="cpu")
    assert model.step == best_step  # sampling, evaluation and export take it like any checkpoint


def test_a_score_the_evaluation_does_not_give_is_an_error_at_the_first_check(data: Path, tmp_path: Path) -> None:
    raw = evaluating(data)
    raw["log"]["keep_best"] = {"metric": "mode_coverage.on_pallete", "mode": "max"}
    with pytest.raises(RecipeError, match=r"log\.keep_best\.metric: 'mode_coverage\.on_pallete' names no score") as caught:
        train(raw, tmp_path / "typo")
    assert "did you mean 'on_palette'" in str(caught.value)
    # a metric that does not apply to this data (colour_accuracy scores shapes-deterministic)
    raw = recipe(data, train={"eval_every": 2, "early_stop": {"watch": "colour_accuracy", "mode": "max"}})
    with pytest.raises(RecipeError, match=r"train\.early_stop\.watch: metric 'colour_accuracy' gave no score in "
                                          r"the evaluation at step 2: it scores shapes-deterministic"):
        train(raw, tmp_path / "skipped")


# -- names ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["pix2pix", "cyclegan", "bicyclegan"])
def test_declared_loss_names_are_what_a_step_returns(data: Path, model: str) -> None:
    from helpers import parts_of

    resolved = resolve_recipe(recipe(data, model=model))
    parts = parts_of(resolved)
    from ganzoo.data.from_recipe import make_dataset
    from ganzoo.data.collate import collate_items

    dataset = make_dataset(resolved, "train")
    losses = parts.step(collate_items([dataset[0], dataset[1]]))
    cls = type(parts.model)
    assert cls.loss_names(resolved.model) == list(losses)


@pytest.mark.parametrize("changes, key, message", [
    ({"train": {"early_stop": {"watch": "G_totl"}}}, "train.early_stop.watch",
     "'G_totl' is neither a loss this pix2pix logs (D, gan, l1, G_total) nor a registered metric"),
    ({"train": {"early_stop": {"watch": "mode_coverage", "mode": "max"}}}, "train.early_stop.watch",
     "is an evaluation score, but train.eval_every is null"),
    ({"train": {"eval_every": 2, "eval_metrics": ["fid"], "early_stop": {"watch": "mode_coverage", "mode": "max"}}},
     "train.early_stop.watch", "metric 'mode_coverage' is not in train.eval_metrics (fid)"),
    ({"train": {"eval_every": 2, "early_stop": {"watch": "mode_coverage"}}}, "train.early_stop.mode",
     "is required when watching the metric score 'mode_coverage'"),
    ({"train": {"early_stop": {"patience": 3}}}, "train.early_stop.watch", "is required"),
    ({"train": {"early_stop": {"watch": "l1", "patience": 0}}}, "train.early_stop.patience", "must be >= 1"),
    ({"log": {"keep_best": {"metric": "l1", "mode": "min"}}}, "log.keep_best.metric", "'l1' is not a registered metric"),
    ({"log": {"keep_best": {"metric": "fid"}}}, "log.keep_best.mode", "is required"),
    ({"log": {"checkpoint_every_epochs": 0}}, "log.checkpoint_every_epochs", "must be >= 1"),
])
def test_bad_names_and_values_are_recipe_errors(data: Path, changes: dict[str, Any], key: str, message: str) -> None:
    raw = recipe(data)
    for section, values in changes.items():
        raw[section].update(values)
    with pytest.raises(RecipeError) as caught:
        resolve_recipe(raw)
    assert caught.value.key == key and message in caught.value.message


def test_zero_weighted_terms_are_not_watchable(data: Path) -> None:
    raw = recipe(data, train={"early_stop": {"watch": "l1"}})
    raw["model"]["losses"] = {"l1": 0.0}
    with pytest.raises(RecipeError, match="'l1' is neither a loss this pix2pix logs"):
        resolve_recipe(raw)


def test_an_undeclared_model_is_checked_at_the_first_log_step(data: Path, tmp_path: Path,
                                                              temp_register: Any) -> None:
    class Undeclared(Pix2Pix):
        """pix2pix without loss_names (as a plugin model might be)."""

        @classmethod
        def loss_names(cls, model: Any) -> None:
            return None

    temp_register("model", "undeclared_pix2pix", Undeclared)
    raw = recipe(data, train={"early_stop": {"watch": "G_totl"}})
    raw["model"]["type"] = "undeclared_pix2pix"
    resolved = resolve_recipe(raw)  # cannot be known yet
    with pytest.raises(RecipeError, match=r"train\.early_stop\.watch: 'G_totl' is not a loss this run logs; it logs "
                                          r"D, gan, l1, G_total") as caught:
        Trainer(resolved, tmp_path / "run", show_progress=False).run()
    assert "did you mean 'G_total'" in str(caught.value)


def test_names_are_classified_by_the_metric_registry() -> None:
    assert classify("G_total").metric is None
    assert (classify("fid").metric, classify("fid").score) == ("fid", None)
    assert (classify("mode_coverage.on_palette").metric, classify("mode_coverage.on_palette").score) == (
        "mode_coverage", "on_palette")


def test_cli_errors_are_one_line_with_exit_2(data: Path, tmp_path: Path) -> None:
    raw = recipe(data, train={"early_stop": {"watch": "G_totl"}})
    path = write_recipe(raw, tmp_path / "typo.yaml")
    result = invoke(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2 and "train.early_stop.watch" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_build_model_is_unaffected(data: Path) -> None:
    model = build_model(resolve_recipe(stopping_recipe(data)), "cpu")
    assert set(model.networks) == {"G", "D"}
