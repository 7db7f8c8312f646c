"""``ganzoo bench`` on a tiny recipe: the JSON report has sane figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from ganzoo.bench import build_parts, cpu_peak_tflops, synthetic_batch
from ganzoo.cli import main
from ganzoo.recipe import prepare_recipe

TINY = {
    "name": "tiny_pix2pix",
    "model": {"type": "pix2pix", "networks": {
        "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "ngf": 8, "norm": "batch"},
        "D": {"type": "basic", "input_nc": 4, "ndf": 8, "norm": "batch"}}},
    "data": {"root": "datasets/unused", "load_size": 32, "crop_size": 32},
    "train": {"batch_size": 2, "device": "cpu"},
}


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_bench_json_reports_sane_figures(tiny_recipe: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(tiny_recipe), "--steps", "2", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"] == "pix2pix" and report["batch_size"] == 2 and report["image_size"] == 32
    assert len(report["step_seconds"]) == 2
    assert 0 < report["min_s"] <= report["median_s"] <= report["max_s"]
    assert report["images_per_s"] == pytest.approx(2 / report["median_s"])
    assert report["memory_kind"] == "rss" and report["peak_memory_mib"] > 10
    # A 32-px U-Net and PatchGAN step is tens of MFLOP: far more than zero, far less than a TFLOP.
    assert 1e6 < report["flops_per_step"] < 1e12
    assert report["achieved_tflops"] == pytest.approx(report["flops_per_step"] / report["median_s"] / 1e12)
    if report["peak_tflops"] is not None:
        assert 0 < report["fraction_of_peak"] < 1
    # no accelerator plugin named: nothing swapped, and the kit's old fields are gone
    assert report["accelerators"] == [] and "conv_routes" not in report and "tuned_cpu_convs" not in report


def test_bench_table_and_overrides(tiny_recipe: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(tiny_recipe), "--steps", "1", "--warmup", "0", "--no-flops",
                                       "--set", "train.batch_size=4", "--peak-tflops", "0.5"])
    assert result.exit_code == 0, result.output
    assert "s/step" in result.output and "batch 4" in result.output


def test_bench_rejects_bad_recipe_values_without_a_traceback(tiny_recipe: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(tiny_recipe), "--set", "train.precision=fp8"])
    assert result.exit_code == 2
    assert "train.precision" in result.output and "Traceback" not in result.output


def test_synthetic_batch_has_the_recipe_shapes_and_range(tiny_recipe: Path) -> None:
    recipe = prepare_recipe(tiny_recipe, ["train.channels_last=true"])
    parts = build_parts(recipe, torch.device("cpu"))
    assert parts.accelerators == {} and set(parts.optimizers) == {"G", "D"}
    model = parts.model
    batch = synthetic_batch(recipe, model, model.device)
    assert batch["A"].shape == (2, 1, 32, 32) and batch["B"].shape == (2, 3, 32, 32)
    assert batch["A"].min() >= -1 and batch["B"].max() <= 1
    assert batch["A"].is_contiguous(memory_format=torch.channels_last)


def test_cpu_peak_estimate_scales_with_threads() -> None:
    one, _ = cpu_peak_tflops(1)
    two, source = cpu_peak_tflops(2)
    if one is not None:
        assert two == pytest.approx(2 * one) and "estimate" in source
