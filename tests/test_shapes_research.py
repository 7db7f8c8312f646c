"""Smoke test of benchmarks/shapes_research.py at a tiny size: trains, scores every checkpoint, writes the tables."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "shapes_research.py"


@pytest.fixture(scope="module")
def research():
    spec = importlib.util.spec_from_file_location("shapes_research", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def tiny(root: Path) -> list[str]:
    overrides = [f"data.root={root}", "data.shapes.n_train=8", "data.shapes.n_val=3", "data.shapes.n_test=1",
                 "train.batch_size=2", "model.networks.G.ngf=4", "model.networks.D.ndf=4", "model.networks.D.num_D=1",
                 "train.device=cpu"]
    return [arg for value in overrides for arg in ("--set", value)]


def test_research_script_trains_scores_and_writes_tables(research, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--out", str(out), "--steps", "2", "--checkpoint-every", "1", "--seeds", "0", "--ablation-seeds", "0",
            "--num-inputs", "2", "--num-z", "2", *tiny(tmp_path / "shapes")]
    # D2 is absent from pix2pix+noise (use_same_D), so its width stays the recipe's: only D is narrowed above.
    assert research.main(args) == 0

    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert set(runs) == {"bicyclegan_seed0", "pix2pix_noise_seed0",
                         "E=resnet__inject=input_seed0", "E=resnet__inject=all_seed0",
                         "E=conv__inject=input_seed0"}  # conv x all is the recipe itself: bicyclegan_seed0
    for name, run in runs.items():
        assert run["status"] == "trained", name
        assert sorted(run["scores"]) == ["1", "2"], name  # every checkpoint scored
        scores = run["scores"]["2"]
        assert 0 <= scores["mode_coverage"] <= 8 and 0 <= scores["on_palette"] <= 1
        # The nearest-colour rule counts every sample, so it is never below the on-palette one.
        assert scores["same_colour_fraction"] <= scores["same_nearest_colour_fraction"] <= 1
        assert scores["mode_coverage"] <= scores["nearest_colour_coverage"] <= 8
    assert 0 <= results["data_same_colour_fraction"] <= 1
    assert set(results["cpu_s_per_step"]) == {"BicycleGAN", "pix2pix+noise"}

    table = (out / "results.md").read_text()
    assert "| BicycleGAN | 2 |" in table and "| pix2pix+noise | 1 |" in table
    assert "| resnet | input | 2 | 1 |" in table and "| conv | input | 2 | 1 |" in table
    # The ablation ran the BicycleGAN recipe with each cell's values; the encoder swapped family and depth
    # but kept the recipe's width and code layout.
    recipe = yaml.safe_load((out / "ablation" / "E=resnet__inject=all_seed0" / "recipe.yaml").read_text())
    encoder = recipe["model"]["networks"]["E"]
    assert (encoder["type"], encoder["n_blocks"], encoder["z_grid"], encoder["nef"]) == ("resnet", 3, 4, 32)
    assert "n_layers" not in encoder and recipe["model"]["networks"]["G"]["inject"] == "all"

    # Re-running skips the finished runs and reuses the cached scores.
    assert research.main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert {run["status"] for run in again["runs"].values()} == {"finished"}
    assert again["runs"]["bicyclegan_seed0"]["scores"] == runs["bicyclegan_seed0"]["scores"]


def test_trajectory_table_gives_mean_and_spread(research) -> None:
    scores = {"mode_coverage": 4.0, "on_palette": 0.5, "same_colour_fraction": 0.1}  # nearest-colour ones missing
    table = research.trajectory_table(
        {"M": {0: {10: scores}, 1: {10: {**scores, "mode_coverage": 6.0}}}}, {"M": 6.0})
    assert "| M | 10 | 1.0 | 2 | 5.00 ± 1.41 (4.00-6.00) | - | 0.50 ± 0.00 (0.50-0.50) |" in table
    assert table.splitlines()[0].count("|") == table.splitlines()[2].count("|")


def test_report_only_trains_nothing(research, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--out", str(out), "--steps", "2", "--seeds", "0", "--ablation-seeds", "", "--num-inputs", "1",
            "--num-z", "2", *tiny(tmp_path / "shapes")]
    assert research.main([*args, "--report-only"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {run["status"] for run in results["runs"].values()} == {"not started"}
    assert not (out / "runs" / "bicyclegan_seed0").exists()
    assert "Not scored" not in (out / "results.md").read_text()
