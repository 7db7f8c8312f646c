"""``ganzoo eval``, ``evaluate`` on real checkpoints, and ``train.eval_every``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganzoo.cli import main
from ganzoo.data.shapes import generate_shapes
from ganzoo.evaluation import evaluate, flat_scores
from ganzoo.inference import load
from ganzoo.recipe import prepare_recipe
from ganzoo.training.trainer import Trainer
from helpers import BICYCLE, RECIPES, tiny_run


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", "shapes-multimodal", size=64, n_train=4,
                           n_val=3, n_test=0, seed=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shapes: Path) -> Path:
    return tiny_run(tmp_path_factory.mktemp("runs"), "quickstart_bicyclegan.yaml", shapes, *BICYCLE)


def test_evaluate_a_bicyclegan_checkpoint_is_deterministic(run: Path) -> None:
    metrics = ["mode_coverage", "reconstruction", "latent_recovery"]
    first = evaluate(run, metrics=metrics, num_inputs=2, num_z=3, device="cpu")
    again = evaluate(load(run, device="cpu"), metrics=metrics, num_inputs=2, num_z=3)
    assert flat_scores(first) == flat_scores(again)
    assert first["protocol"]["num_inputs"] == 2 and first["protocol"]["num_z"] == 3
    coverage = first["metrics"]["mode_coverage"]
    assert 0.0 <= coverage["mode_coverage"] <= 3.0  # at most one colour per sample
    assert set(coverage) >= {"on_palette", "same_colour_fraction", "info"}
    # Nearest-colour figures count every sample, so they are never below the tolerance-bound ones.
    assert coverage["mode_coverage"] <= coverage["nearest_colour_coverage"] <= 3.0
    assert coverage["same_colour_fraction"] <= coverage["same_nearest_colour_fraction"] <= 1.0
    assert first["metrics"]["reconstruction"]["psnr"] > 0
    other_seed = evaluate(run, metrics=["latent_recovery"], num_inputs=2, num_z=3, seed=1, device="cpu")
    assert other_seed["metrics"]["latent_recovery"] != first["metrics"]["latent_recovery"]


def test_eval_cli_prints_json_and_writes_files(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    args = ["eval", str(run), "--metrics", "mode_coverage,reconstruction", "--num-inputs", "2", "--num-z", "2",
            "--device", "cpu", "--json", "--out", str(out), "--tensorboard", str(tmp_path / "tb")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    assert set(printed["metrics"]) == {"mode_coverage", "reconstruction"}
    assert any((tmp_path / "tb").iterdir())


def test_eval_cli_errors_are_messages(run: Path, tmp_path: Path) -> None:
    wrong = CliRunner().invoke(main, ["eval", str(run), "--metrics", "cycle", "--device", "cpu"])
    assert wrong.exit_code == 1 and "does not apply" in wrong.output
    missing = CliRunner().invoke(main, ["eval", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    no_split = CliRunner().invoke(main, ["eval", str(run), "--split", "test", "--device", "cpu"])
    assert no_split.exit_code == 2 and "test" in no_split.output


def test_train_eval_every_logs_scores(shapes: Path, tmp_path: Path) -> None:
    recipe = prepare_recipe(RECIPES / "quickstart_bicyclegan.yaml", [
        f"data.root={shapes}", "data.shapes=null", "train.device=cpu", "train.max_steps=2", "train.batch_size=2",
        "train.eval_every=2", "train.eval_metrics=[mode_coverage, latent_recovery]", *BICYCLE])
    Trainer(recipe, tmp_path / "run", show_progress=False).run()
    lines = (tmp_path / "run" / "eval.jsonl").read_text().splitlines()
    assert len(lines) == 1
    logged = json.loads(lines[0])
    assert logged["step"] == 2 and set(logged["metrics"]) == {"mode_coverage", "latent_recovery"}


def test_pix2pix_noise_without_encoder_skips_reconstruction(tmp_path: Path, shapes: Path) -> None:
    """A latent-code generator with no encoder (pix2pix+noise) is evaluated; reconstruction says why not."""
    run = tiny_run(tmp_path, "bicyclegan_variants/pix2pix_noise.yaml", shapes, "model.networks.G.ngf=8",
                   "model.networks.D2.ndf=8")
    result = evaluate(run, metrics=None, num_inputs=2, num_z=3, device="cpu")
    assert "no encoder" in result["skipped"]["reconstruction"]
    assert "mode_coverage" in result["metrics"]
