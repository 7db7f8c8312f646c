"""Exact resume: a run SIGKILLed at any moment of its life resumes to bit-identical weights.

Every run here is a real ``python -m ganzoo train`` subprocess on a tiny 32-px recipe; the killed
ones go through ``tests/fault_injection.py``, which makes the process SIGKILL itself at a chosen
moment (after a checkpoint, between a checkpoint's temp write and its rename, between the
checkpoint and the ``latest.pt`` link). The resumed run must end with the same networks,
optimizers, schedulers, model state (image pools, grad scalers), RNG states and step as a run that
was never interrupted: every tensor bit for bit.
"""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from fault_injection import SHAPES_PAIRED, SHAPES_UNPAIRED, run_ganzoo, tiny_recipe, write_recipe
from ganzoo.data.shapes import ensure_shapes
from ganzoo.training.checkpoint import CheckpointDir, load_checkpoint
from helpers import assert_identical

MODELS = ("pix2pix", "cyclegan", "bicyclegan")
FINAL = "step_00000010.pt"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    ensure_shapes(root / "unpaired", **SHAPES_UNPAIRED)
    for model in MODELS:
        data = root / ("unpaired" if model == "cyclegan" else "paired")
        write_recipe(tiny_recipe(model, data), root / f"{model}.yaml")
    return root


_references: dict[str, dict[str, Any]] = {}


def reference(workspace: Path, model: str) -> dict[str, Any]:
    """The final checkpoint of an uninterrupted run (made once per model)."""
    if model not in _references:
        out = workspace / f"reference_{model}"
        done = run_ganzoo("train", str(workspace / f"{model}.yaml"), "--out", str(out), "--no-progress")
        assert done.returncode == 0, done.stderr
        _references[model] = load_checkpoint(out / "checkpoints" / FINAL)
    return _references[model]


def checkpoint_steps(run: Path) -> list[int]:
    return [step for step, _ in CheckpointDir(run / "checkpoints").step_files()]


@pytest.mark.parametrize("model", MODELS)
def test_sigkill_after_a_checkpoint_then_resume_is_bit_identical(workspace: Path, model: str) -> None:
    expected = reference(workspace, model)
    run = workspace / f"killed_{model}"
    killed = run_ganzoo("train", str(workspace / f"{model}.yaml"), "--out", str(run), "--no-progress",
                        fault=("kill-after-checkpoint", 6))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert checkpoint_steps(run) == [3, 6]  # it really died at step 6, before step 9's checkpoint

    resumed = run_ganzoo("train", "--resume", str(run), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "at step 6/10" in resumed.stderr
    assert_identical(load_checkpoint(run / "checkpoints" / FINAL), expected)

    state = expected["model_state"]
    if model == "cyclegan":  # the comparison covered full image pools that had started swapping
        assert state["pools"]["A"]["count"] == 3 and state["pools"]["B"]["count"] == 3
    assert expected["step"] == 10 and expected["rng"]["torch"].numel() > 0


def test_sigkill_in_the_middle_of_checkpoint_writes_keeps_the_previous_one(workspace: Path) -> None:
    """Killed between a checkpoint's temp write and its rename, then between it and ``latest.pt``."""
    expected = reference(workspace, "pix2pix")
    run = workspace / "killed_mid_write"
    ckpt = run / "checkpoints"

    first = run_ganzoo("train", str(workspace / "pix2pix.yaml"), "--out", str(run), "--no-progress",
                       fault=("kill-before-rename", 6))
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert checkpoint_steps(run) == [3]
    assert [p.name for p in ckpt.glob(".step_00000006.pt.tmp-*")], "the temp file of step 6 is left behind"
    assert load_checkpoint(ckpt / "latest.pt")["step"] == 3

    second = run_ganzoo("train", "--resume", str(run), "--no-progress", fault=("kill-before-latest", 9))
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert "at step 3/10" in second.stderr
    assert not list(ckpt.glob(".step_*.tmp-*")), "the dead run's temp file is removed on resume"
    assert checkpoint_steps(run) == [3, 6, 9]  # killed before pruning, too
    assert load_checkpoint(ckpt / "latest.pt")["step"] == 6  # latest.pt lags one checkpoint behind

    third = run_ganzoo("train", "--resume", str(run), "--no-progress")
    assert third.returncode == 0, third.stderr
    assert "at step 9/10" in third.stderr  # the newest complete file wins over a stale latest.pt
    assert_identical(load_checkpoint(ckpt / FINAL), expected)
    assert not list(ckpt.glob(".*.tmp-*"))
