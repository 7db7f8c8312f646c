"""``ganzoo ablate``: grid parsing, validation before training, the 2x2 grid, re-running and resuming."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ganzoo.training.trainer as trainer_module
from ganzoo.ablation import _with_evaluation_flags, parse_grid, plan_ablation, run_ablation, run_name
from ganzoo.cli import main
from ganzoo.errors import RecipeError
from ganzoo.training.trainer import Trainer, TrainingInterrupted

VARIANTS = Path(__file__).resolve().parents[1] / "recipes" / "bicyclegan_variants"

# The shapes BicycleGAN recipe at 32 px with 8-channel networks, 2 steps per run.
TINY = f"""
base: {VARIANTS / 'shapes_common.yaml'}
name: tiny_ablation
model:
  networks:
    G:  {{num_downs: 5, ngf: 8}}
    E:  {{type: conv_128, nef: 8}}
    D:  {{ndf: 8, num_D: 1}}
    D2: {{ndf: 8, num_D: 1}}
data:
  root: data/shapes32
  shapes: {{size: 32, n_train: 8, n_val: 2, n_test: 2}}
train: {{batch_size: 4, max_steps: 2}}
log: {{every: 2, samples_every: 2, checkpoint_every: 2}}
"""
GRID = ["model.nz=2,4", "model.networks.G.inject=input,all"]
EVAL = {"num_inputs": 2, "num_z": 2}


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # data.root is relative to the working directory
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def fake_evaluator(calls: list[Path]) -> Any:
    """Stands in for ganzoo.evaluation.evaluate where the scores themselves are not under test."""

    def evaluate(folder: Path, metrics: Any = None, **options: Any) -> dict[str, Any]:
        calls.append(Path(folder))
        step = json.loads((Path(folder) / "summary.json").read_text())["step"]
        return {"step": step, "metrics": {"fake": {"score": float(len(calls))}}, "unavailable": {}}

    return evaluate


# -- parsing and validation ------------------------------------------------------------------
def test_grid_values_are_split_outside_brackets_and_parsed_as_yaml() -> None:
    axis = parse_grid("train.optimizer.betas=[0.5,0.999],[0.0, 0.99]")
    assert axis.key == "train.optimizer.betas"
    assert axis.values == ("[0.5,0.999]", "[0.0, 0.99]")
    assert parse_grid("model.nz=2,8,256").values == ("2", "8", "256")
    assert parse_grid("model.networks.E.type = conv_128 , resnet_128").values == ("conv_128", "resnet_128")


@pytest.mark.parametrize("spec, message", [
    ("model.nz", "is not KEY=V1,V2"),
    ("=2,3", "is not KEY=V1,V2"),
    ("model.nz=", "is not KEY=V1,V2"),
    ("model.nz=2,,3", "empty value"),
    ("model.nz=2,", "empty value"),
    ("model.nz=[2", "YAML syntax error"),
    ("model.nz=2,2", "lists a value twice"),
    ("model..nz=2", "dotted key path"),
])
def test_bad_grid_syntax_is_a_recipe_error(spec: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_grid(spec)


def test_run_names_are_readable_folder_names() -> None:
    assert run_name({"model.nz": "8", "model.networks.G.inject": "all"}) == "nz=8__G.inject=all"
    assert run_name({"train.optimizer.betas": "[0.5, 0.999]"}) == "train.optimizer.betas=0.5-0.999"
    assert run_name({"model.loss_warmup": "{}"}) == "loss_warmup=empty"  # not a bare "x" or "loss_warmup="


def test_the_recorded_command_names_the_evaluation_options() -> None:
    cli = "ganzoo ablate r.yaml --grid model.nz=2,8 --out runs/a"
    options = {"split": "val", "num_inputs": 30, "num_z": 16}
    assert _with_evaluation_flags(cli, ["mode_coverage"], options, True) == (
        cli + " --metrics mode_coverage --split val --num-inputs 30 --num-z 16")
    assert _with_evaluation_flags(cli, None, options, True) == cli + " --split val --num-inputs 30 --num-z 16"
    assert _with_evaluation_flags(cli, None, options, False) == cli + " --metrics none"
    named = cli + " --num-inputs 30 --metrics mode_coverage"  # a caller that wrote them already: no repeats
    assert _with_evaluation_flags(named, ["mode_coverage"], options, True) == named + " --split val --num-z 16"
    assert _with_evaluation_flags("nz sweep", None, options, True) == "nz sweep"  # not a command: as given


def test_every_combination_is_validated_before_anything_trains(recipe: Path, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"model\.networks\.G\.injekt: unknown key \(in --grid") as info:
        plan_ablation(recipe, ["model.nz=2,4", "model.networks.G.injekt=input,all"])
    assert "did you mean 'inject'" in str(info.value.hint)
    # Only the last value is wrong: still refused up front, naming the key and the combination.
    with pytest.raises(RecipeError, match="model.networks.E.type: unknown encoder 'nope'") as info:
        plan_ablation(recipe, ["model.networks.E.type=conv_128,nope"])
    assert "model.networks.E.type=nope" in str(info.value.hint)
    with pytest.raises(RecipeError, match="both a --grid key and a --set key"):
        plan_ablation(recipe, ["model.nz=2,4"], ["model.nz=8"])
    with pytest.raises(RecipeError, match="appears in two --grid options"):
        plan_ablation(recipe, ["model.nz=2", "model.nz=4"])
    assert not (tmp_path / "data").exists()


def test_cli_reports_bad_grids_without_a_traceback(recipe: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["ablate", str(recipe), "--grid", "model.nz=2,,4"])
    assert result.exit_code == 2 and "empty value" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["ablate", str(recipe), "--grid", "model.nope=1,2"])
    assert result.exit_code == 2 and "model.nope: unknown key" in result.output
    result = runner.invoke(main, ["ablate", str(recipe)])
    assert result.exit_code == 2 and "--grid" in result.output
    result = runner.invoke(main, ["ablate", str(recipe), "--grid", "model.nz=2,4", "--metrics", "nope"])
    assert result.exit_code != 0 and "unknown metric 'nope'" in result.output


def test_dry_run_lists_the_runs_and_writes_nothing(recipe: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ablate", str(recipe), *[w for g in GRID for w in ("--grid", g)],
                                       "--out", "abl", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "4 run(s)" in result.output and result.output.count("would train") == 4
    assert "nz=2__G.inject=input" in result.output
    assert not (tmp_path / "abl").exists()


# -- training -----------------------------------------------------------------------------------
def test_a_2x2_grid_trains_evaluates_writes_both_tables_and_reruns_skip(recipe: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "abl"
    runs = plan_ablation(recipe, GRID)
    assert [r.name for r in runs] == ["nz=2__G.inject=input", "nz=2__G.inject=all",
                                      "nz=4__G.inject=input", "nz=4__G.inject=all"]
    result = run_ablation(runs, out, metrics=["mode_coverage", "reconstruction"], eval_options=EVAL,
                          show_progress=False, title="ganzoo ablate tiny.yaml")
    assert [o.status for o in result.outcomes] == ["trained"] * 4
    for run in runs:
        summary = json.loads((out / run.name / "summary.json").read_text())
        assert summary["step"] == summary["total_steps"] == 2
        assert (out / run.name / "checkpoints" / "latest.pt").is_file()
        assert json.loads((out / run.name / "eval.json").read_text())["result"]["metrics"]["mode_coverage"]

    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == [r.name for r in runs]
    assert [(row["model.nz"], row["model.networks.G.inject"]) for row in rows] == [
        ("2", "input"), ("2", "all"), ("4", "input"), ("4", "all")]
    for row in rows:
        assert row["status"] == "trained" and row["step"] == "2"
        assert 0.0 <= float(row["mode_coverage.mode_coverage"]) <= 8.0
        assert 0.0 <= float(row["reconstruction.l1"]) <= 1.0
    markdown = (out / "results.md").read_text()
    # the recorded command repeats the evaluation too (it used to drop --num-inputs and --num-z)
    assert "`ganzoo ablate tiny.yaml --metrics mode_coverage,reconstruction --num-inputs 2 --num-z 2`" in markdown
    assert "| run | model.nz | model.networks.G.inject | status |" in markdown
    assert markdown.count("| trained |") == 4

    # Re-running trains nothing and evaluates nothing: every run is finished and its eval.json kept.
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer_module, "Trainer", no_training)
    again = run_ablation(plan_ablation(recipe, GRID), out, metrics=["mode_coverage", "reconstruction"],
                         eval_options=EVAL, show_progress=False, evaluator=no_training)
    assert [o.status for o in again.outcomes] == ["finished"] * 4
    assert [o.scores for o in again.outcomes] == [o.scores for o in result.outcomes]
    with (out / "results.csv").open() as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["finished"] * 4

    # Another recipe in the same folder is refused rather than mixed into the table.
    with pytest.raises(Exception, match="holds a run of a different recipe"):
        run_ablation(plan_ablation(recipe, GRID, ["train.optimizer.lr=0.001"]), out, evaluate=False,
                     show_progress=False)


def test_an_interrupted_run_resumes_where_it_stopped(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "abl"
    runs = plan_ablation(recipe, ["model.nz=2,4"])
    # Stop the first run after one step, as Ctrl-C does (a checkpoint, no summary).
    trainer = Trainer(runs[0].recipe, out / runs[0].name, show_progress=False)
    trainer.request_stop()
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    assert not (out / runs[0].name / "summary.json").exists()

    calls: list[Path] = []
    result = run_ablation(runs, out, eval_options=EVAL, show_progress=False, evaluator=fake_evaluator(calls))
    assert [o.status for o in result.outcomes] == ["resumed", "trained"]
    summary = json.loads((out / runs[0].name / "summary.json").read_text())
    assert summary["step"] == 2 and summary["steps_this_session"] == 1
    assert [o.scores for o in result.outcomes] == [{"fake.score": 1.0}, {"fake.score": 2.0}]
    assert calls == [out / r.name for r in runs]
