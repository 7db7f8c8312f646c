"""Issue #27 on the CPU: cuDNN flags from the recipe, resume on another device, no MPS.

A checkpoint written on a GPU (here fabricated from a real CPU run: its RNG state claims four CUDA
generators and its device says ``cuda:0``) must resume on this machine, which has none, to the same
weights as a run that was never interrupted; ``--set train.device=cpu`` moves a run whose recipe
says ``cuda``, with a note. What needs a GPU is checked by ``benchmarks/gpu_check.sh``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fault_injection import SHAPES_PAIRED, run_ganzoo, tiny_recipe, write_recipe
from ganzoo.cli import main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.recipe import resolve_recipe
from ganzoo.training import rng
from ganzoo.training.checkpoint import CheckpointDir, atomic_save, load_checkpoint
from ganzoo.training.device import KernelFlags, configure_kernels, kernel_flags
from helpers import assert_identical


def _recipe(tmp_path: Path, **data: object):
    raw = tiny_recipe("pix2pix", tmp_path / "data")
    raw["data"].update(data)
    return raw


# -- 1. cuDNN flags ----------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "train", "expected"), [
    ({}, {}, KernelFlags(cudnn_benchmark=True, deterministic=False)),  # resize_and_crop: one size
    ({"preprocess": "crop"}, {}, KernelFlags(True, False)),
    ({"preprocess": "none"}, {}, KernelFlags(True, False)),  # the generated shapes world: one size
    ({"preprocess": "none", "shapes": None}, {}, KernelFlags(False, False)),  # a folder of any sizes
    ({"preprocess": "scale_width", "shapes": None, "load_size": 32}, {}, KernelFlags(False, False)),  # heights vary
    ({"preprocess": "scale_width", "shapes": None, "load_size": 32}, {"cudnn_benchmark": True},
     KernelFlags(True, False)),
    ({}, {"cudnn_benchmark": False}, KernelFlags(False, False)),
    ({}, {"deterministic": True}, KernelFlags(False, True)),
    ({}, {"deterministic": True, "cudnn_benchmark": True}, KernelFlags(False, True)),  # deterministic wins
])
def test_kernel_flags_follow_the_recipe(tmp_path: Path, data: dict, train: dict, expected: KernelFlags) -> None:
    raw = _recipe(tmp_path, **data)
    raw["train"].update(train)
    assert kernel_flags(resolve_recipe(raw)) == expected


def test_cudnn_benchmark_is_true_false_or_null(tmp_path: Path) -> None:
    raw = _recipe(tmp_path)
    assert resolve_recipe(raw).train.cudnn_benchmark is None
    raw["train"]["cudnn_benchmark"] = "yes"
    with pytest.raises(Exception, match="train.cudnn_benchmark"):
        resolve_recipe(raw)


def test_configure_kernels_on_the_cpu_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.are_deterministic_algorithms_enabled())
    for flags in (KernelFlags(True, False), KernelFlags(False, True)):
        configure_kernels(torch.device("cpu"), flags)
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
                torch.are_deterministic_algorithms_enabled()) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


# -- 2. RNG states from a machine with other GPUs ----------------------------------------------
def _fake_cuda_states(n: int) -> list[torch.Tensor]:
    return [torch.full((16,), i, dtype=torch.uint8) for i in range(n)]


def test_cuda_rng_states_beyond_the_visible_devices_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    state = rng.rng_state()
    state["cuda"] = _fake_cuda_states(4)
    rng.set_rng_state(state)  # this machine: no CUDA at all (or a CUDA build without a GPU)
    restored: list[tuple[int, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, index: restored.append((index, int(s[0]))))
    rng.set_rng_state(state)  # four stored, two visible: the first two
    assert restored == [(0, 0), (1, 1)]
    restored.clear()
    state["cuda"] = _fake_cuda_states(1)
    rng.set_rng_state(state)  # one stored, two visible: the second keeps its seeding
    assert restored == [(0, 0)]
    restored.clear()
    del state["cuda"]
    rng.set_rng_state(state)  # a CPU checkpoint on a GPU machine
    assert restored == []


@pytest.fixture(scope="module")
def gpu_like_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the recipe file, a finished 6-step CPU run with checkpoints at steps 3 and 6)."""
    root = tmp_path_factory.mktemp("devices")
    ensure_shapes(root / "data", **SHAPES_PAIRED)
    recipe = write_recipe(tiny_recipe("pix2pix", root / "data", max_steps=6, device="auto"), root / "p2p.yaml")
    done = run_ganzoo("train", str(recipe), "--out", str(root / "reference"), "--no-progress")
    assert done.returncode == 0, done.stderr
    return recipe, root / "reference"


def _as_if_from_a_gpu(reference: Path, run: Path, recipe_device: str | None = None) -> None:
    """``run``: ``reference`` cut back to its step-3 checkpoint, which now says it was made on a 4-GPU machine."""
    shutil.copytree(reference, run)
    directory = CheckpointDir(run / "checkpoints")
    for step, path in directory.step_files():
        if step > 3:
            path.unlink()
    directory.latest.unlink()
    (run / "summary.json").unlink()
    path = run / "checkpoints" / "step_00000003.pt"
    payload = load_checkpoint(path)
    payload["rng"]["cuda"] = _fake_cuda_states(4)
    payload["device"] = "cuda:0"
    if recipe_device is not None:
        payload["recipe"]["train"]["device"] = recipe_device
    atomic_save(payload, path)


def test_a_checkpoint_with_four_cuda_generators_resumes_on_a_machine_with_none(
        gpu_like_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, reference = gpu_like_run
    run = tmp_path / "from_gpu"
    _as_if_from_a_gpu(reference, run)
    done = run_ganzoo("train", "--resume", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "note: this run was trained on cuda:0 and continues on cpu" in done.stderr
    assert "resumed from" in done.stderr and "at step 3/6" in done.stderr
    # the CPU generators were restored exactly: the same weights as the run that never stopped
    expected = load_checkpoint(reference / "checkpoints" / "step_00000006.pt")
    resumed = load_checkpoint(run / "checkpoints" / "step_00000006.pt")
    for part in ("networks", "optimizers", "schedulers"):
        assert_identical(resumed[part], expected[part], part)
    assert resumed["device"] == "cpu" and resumed["step"] == 6


def test_resume_with_another_train_device_is_accepted_with_a_note(gpu_like_run: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    _, reference = gpu_like_run
    run = tmp_path / "cuda_recipe"
    _as_if_from_a_gpu(reference, run, recipe_device="cuda")
    refused = run_ganzoo("train", "--resume", str(run), "--no-progress")  # no CUDA here: says what to do
    assert refused.returncode == 2 and "train.device" in refused.stderr and "no CUDA device" in refused.stderr
    moved = run_ganzoo("train", "--resume", str(run), "--set", "train.device=cpu", "--no-progress")
    assert moved.returncode == 0, moved.stderr
    assert "note: this run was trained on cuda:0 and continues on cpu" in moved.stderr
    assert load_checkpoint(run / "checkpoints" / "step_00000006.pt")["recipe"]["train"]["device"] == "cpu"
    # other keys still may not change on resume
    other = run_ganzoo("train", "--resume", str(run), "--set", "train.seed=3", "--set", "train.max_steps=7")
    assert other.returncode == 2 and "train.seed" in other.stderr and "train.device" in other.stderr


def test_a_resume_on_the_same_device_says_nothing_about_devices(gpu_like_run: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    _, reference = gpu_like_run
    run = tmp_path / "same"
    shutil.copytree(reference, run)
    done = run_ganzoo("train", "--resume", str(run), "--set", "train.max_steps=7", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "continues on" not in done.stderr


# -- 3. no MPS -----------------------------------------------------------------------------------
def test_train_device_mps_exits_2_with_a_clear_message(gpu_like_run: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, _ = gpu_like_run
    result = CliRunner().invoke(main, ["train", str(recipe), "--set", "train.device=mps",
                                       "--out", str(tmp_path / "mps")])
    assert result.exit_code == 2
    assert "train.device: 'mps' is not valid; expected auto, cpu, cuda or cuda:N" in result.output
    assert not (tmp_path / "mps").exists()


def test_eval_and_sample_device_mps_exit_2_naming_the_option(gpu_like_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, reference = gpu_like_run
    for command in (["eval", str(reference), "--metrics", "mode_coverage"],
                    ["sample", str(reference), "--input", str(tmp_path), "--out", str(tmp_path / "s")]):
        result = CliRunner().invoke(main, [*command, "--device", "mps"])
        assert result.exit_code == 2, result.output
        assert "--device: 'mps' is not supported; use auto, cpu, cuda or cuda:N" in result.output
