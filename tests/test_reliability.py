"""Runs that survive: signals, non-finite losses, full disks, corrupt and mismatched checkpoints.

Most tests drive the Trainer in this process on a tiny 32-px pix2pix recipe; the signal tests send
a real SIGTERM / SIGINT to a ``python -m ganzoo train`` subprocess.
"""
from __future__ import annotations

import copy
import errno
import math
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from fault_injection import SHAPES_PAIRED, subprocess_env, tiny_recipe, write_recipe
from ganzoo.cli import main as ganzoo_main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import CheckpointError, GanzooError
from ganzoo.models.pix2pix import Pix2Pix
from ganzoo.recipe import resolve_recipe
from ganzoo.training import checkpoint as checkpoint_module
from ganzoo.training.checkpoint import atomic_save, load_checkpoint
from ganzoo.training.updates import Updater
from ganzoo.training.trainer import NonFiniteLoss, Trainer, TrainingInterrupted


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reliability") / "paired"
    ensure_shapes(root, **SHAPES_PAIRED)
    return root


def recipe(data_root: Path, **train: Any) -> dict[str, Any]:
    raw = tiny_recipe("pix2pix", data_root, **{"max_steps": 4, **train})
    raw["log"] = {"every": 1, "samples_every": 100, "checkpoint_every": 2, "keep_last": 2}
    return resolve_recipe(raw)


def trainer(data_root: Path, out: Path, resume: bool = False, **train: Any) -> Trainer:
    return Trainer(recipe(data_root, **train), out, resume=resume, show_progress=False)


def poison_step(monkeypatch: pytest.MonkeyPatch, step: int, seen: list[dict[str, Any]] | None = None) -> None:
    """Make the ``step``-th training step (1-based) see an input of NaNs; record the state before each step."""
    real = Pix2Pix.train_step
    calls = {"n": 0}

    def train_step(self: Pix2Pix, batch: dict[str, torch.Tensor], updater: Updater) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if seen is not None:
            seen.append(snapshot(self, updater))
        if calls["n"] == step:
            batch = {**batch, "A": torch.full_like(batch["A"], math.nan)}
        return real(self, batch, updater)

    monkeypatch.setattr(Pix2Pix, "train_step", train_step)


def invoke(args: list[str]) -> Any:
    """``ganzoo ARGS`` in this process, with lines wide enough that messages are not wrapped."""
    return CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, args)


def snapshot(model: Pix2Pix, updater: Updater) -> dict[str, Any]:
    """Weights, buffers and optimizer moments (not the learning rate, which the schedule moves every step)."""
    return copy.deepcopy({"networks": {n: net.state_dict() for n, net in model.networks.items()},
                          "optimizers": {n: opt.state_dict()["state"] for n, opt in updater.optimizers.items()}})


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# -- non-finite losses and gradients --------------------------------------------------------------
def test_nonfinite_stop_names_loss_and_step_and_keeps_the_last_checkpoint(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_step(monkeypatch, 3)
    t = trainer(data_root, tmp_path / "run")
    assert t.updater.step_in_backward  # the run stops: updates inside the backward may stay on
    with pytest.raises(NonFiniteLoss) as info:
        t.run()
    message = str(info.value)
    assert "at step 3" in message and "loss D" in message and "step_00000002.pt is untouched" in message
    assert "no update was applied from then on" in message and "train.nonfinite=skip" in message
    assert info.value.exit_code == 3
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert files == ["step_00000002.pt"]
    good = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert good["step"] == 2
    assert all(torch.isfinite(v).all() for net in good["networks"].values() for v in net.values()
               if v.is_floating_point())


def test_nonfinite_stop_through_the_cli_exits_3(data_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    poison_step(monkeypatch, 1)
    path = write_recipe(tiny_recipe("pix2pix", data_root, max_steps=3), tmp_path / "r.yaml")
    result = invoke(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 3, result.output
    assert "non-finite at step 1" in result.output and "no checkpoint had been written yet" in result.output
    assert "Traceback" not in result.output


def test_nonfinite_skip_really_skips_the_update(data_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    poison_step(monkeypatch, 3, seen)
    t = trainer(data_root, tmp_path / "run", nonfinite="skip")
    assert not t.updater.step_in_backward  # a skipped update checks every gradient before any update
    result = t.run()
    assert result.step == 4 and t.skipped_steps == 1
    # State entering step 4 == state entering step 3: weights, batch-norm statistics, Adam moments.
    assert same(seen[3], seen[2])
    assert not same(seen[2], seen[1])  # ...whereas a normal step changes them
    assert all(math.isfinite(v) for v in result.losses.values())
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"skipped_steps": 1' in summary


def test_a_skipped_step_is_not_averaged_into_the_weight_average(data_root: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    poison_step(monkeypatch, 3)
    t = trainer(data_root, tmp_path / "run", nonfinite="skip", ema=0.5)
    t.run()
    assert t.skipped_steps == 1
    assert t.ema.updates["G"] == 3  # 4 steps, one of them skipped


@pytest.mark.parametrize("in_backward", [False, True])
def test_precision_refuses_nonfinite_gradients(in_backward: bool) -> None:
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters(), fused=True)
    before = copy.deepcopy(net.state_dict())
    # updates inside the backward run under nonfinite: stop only (sticky); skip refuses one update
    precision = Updater({"G": opt}, "fp32", torch.device("cpu"), step_in_backward=in_backward,
                        nonfinite="stop" if in_backward else "skip")
    assert precision.step_in_backward is in_backward
    precision.update("G", net(torch.tensor([[math.inf, 1.0]])).sum())  # inf weight gradient
    assert (precision.nonfinite_report() is not None if in_backward else precision.skipped == ["G"])
    assert torch.equal(net.weight, before["weight"])
    # no moment saw the gradient (inside the backward, a parameter updated before it, here maybe the bias, keeps
    # its update: the run stops under train.nonfinite=stop, and skip updates after the backward)
    assert float(opt.state.get(net.weight, {"step": torch.zeros(())})["step"]) == 0
    if in_backward:  # stop: nothing is updated from then on
        return
    opt.zero_grad(set_to_none=True)
    precision.update("G", net(torch.ones(1, 2)).sum())
    assert precision.skipped == ["G"] and not same(net.state_dict(), before)
    assert float(opt.state[net.weight]["step"]) == 1


# -- signals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_writes_a_checkpoint_and_says_how_to_resume(
        data_root: Path, tmp_path: Path, signum: int) -> None:
    raw = tiny_recipe("pix2pix", data_root, max_steps=100_000)
    raw["log"] = {"every": 50, "samples_every": 100_000, "checkpoint_every": 2, "keep_last": 2}
    path = write_recipe(raw, tmp_path / "r.yaml")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ganzoo", "train", str(path), "--out", str(run), "--no-progress"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        # Any step checkpoint means the handlers are installed; keep_last prunes early ones within
        # milliseconds, so waiting for one particular file can miss it.
        while not any((run / "checkpoints").glob("step_*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "finishing this step" in err and f"ganzoo train --resume {run}" in err
    latest = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert latest["step"] >= 2 and f"stopped at step {latest['step']}/" in err

    resumed = subprocess.run([sys.executable, "-m", "ganzoo", "train", "--resume", str(run), "--no-progress",
                              "--set", f"train.max_steps={latest['step'] + 1}"],
                             env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == latest["step"] + 1


def test_stop_request_in_process_raises_training_interrupted(data_root: Path, tmp_path: Path) -> None:
    t = trainer(data_root, tmp_path / "run", max_steps=50)
    t._stop_signal = signal.SIGTERM
    with pytest.raises(TrainingInterrupted) as info:
        t.run()
    assert info.value.exit_code == 130 and "stopped at step 1/50" in str(info.value)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 1


# -- full disks and unwritable folders ------------------------------------------------------------
def test_too_little_disk_space_fails_before_training(data_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    path = write_recipe(tiny_recipe("pix2pix", data_root), tmp_path / "r.yaml")
    result = invoke(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "not enough disk space" in result.output and "MiB" in result.output
    assert not list((tmp_path / "run").glob("checkpoints/*.pt")) and not (tmp_path / "run" / "samples").exists()


def test_unwritable_output_folder_is_a_clear_error(data_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    path = write_recipe(tiny_recipe("pix2pix", data_root), tmp_path / "r.yaml")
    result = invoke(["train", str(path), "--out", str(blocker / "run"), "--no-progress"])
    assert result.exit_code == 2, result.output  # a RunFolderError: a user mistake, exit code 2
    assert "cannot write to the output folder" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("failing", ["torch.save", "os.replace"])
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    run = tmp_path / "run"
    t = trainer(data_root, run, max_steps=6)
    real_save, real_replace = torch.save, checkpoint_module.os.replace

    def full_disk_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(f, "name", "").find("step_00000004") >= 0:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    def full_disk_replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "step_00000004.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    if failing == "torch.save":
        monkeypatch.setattr(checkpoint_module.torch, "save", full_disk_save)
    else:
        monkeypatch.setattr(checkpoint_module.os, "replace", full_disk_replace)
    with pytest.raises(CheckpointError) as info:
        t.run()
    monkeypatch.undo()
    assert "No space left on device" in str(info.value)
    assert "previous checkpoint step_00000002.pt is intact" in str(info.value)
    ckpt = run / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest.pt", "step_00000002.pt"]  # no temp file left
    assert load_checkpoint(ckpt / "latest.pt")["step"] == 2


# -- corrupt and mismatched checkpoints -----------------------------------------------------------
def test_truncated_latest_checkpoint_falls_back_with_a_warning(data_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer(data_root, run, max_steps=4).run()  # checkpoints at 2 and 4 (4 is latest.pt's inode too)
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    result = invoke(["train", "--resume", str(run), "--no-progress",
                                              "--set", "train.max_steps=5"])
    assert result.exit_code == 0, result.output
    assert "skipping unusable checkpoint" in result.output and "corrupt or truncated" in result.output
    assert "resumed from" in result.output and "step_00000002.pt at step 2/5" in result.output


def test_checkpoint_from_another_recipe_names_network_and_key(data_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer(data_root, run, max_steps=2).run()
    payload = load_checkpoint(run / "checkpoints" / "latest.pt")
    # Loading: a recipe with a wider generator.
    wider = recipe(data_root).to_dict()
    wider["model"]["networks"]["G"]["ngf"] = 8
    other = Trainer(resolve_recipe(wider), tmp_path / "other", show_progress=False)
    with pytest.raises(CheckpointError) as info:
        other.load_state(payload, "run/latest.pt")
    assert "network G in run/latest.pt" in str(info.value) and "has shape" in str(info.value)
    # A deeper generator: keys missing.
    deeper = recipe(data_root).to_dict()
    deeper["model"]["networks"]["G"]["num_downs"] = 4
    with pytest.raises(CheckpointError, match=r"network G .* (missing|unexpected) \d+ key"):
        Trainer(resolve_recipe(deeper), tmp_path / "deeper", show_progress=False).load_state(payload, "x")

    # Resuming: a checkpoint whose stored recipe no longer matches its weights (another version).
    payload["recipe"]["model"]["networks"]["D"]["n_layers"] = 3
    atomic_save(payload, run / "checkpoints" / "step_00000003.pt")
    # (a longer run: a finished one is left as it is without loading anything)
    result = invoke(["train", "--resume", str(run), "--no-progress", "--set", "train.max_steps=3"])
    assert result.exit_code == 2, result.output
    assert "network D" in result.output and "Traceback" not in result.output
    assert "model.0" in result.output or "key" in result.output


def test_missing_optimizer_state_is_a_clear_error(data_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    t = trainer(data_root, run, max_steps=2)
    t.run()
    payload = load_checkpoint(run / "checkpoints" / "latest.pt")
    del payload["optimizers"]["D"]
    with pytest.raises(CheckpointError, match="no optimizer state for D"):
        trainer(data_root, tmp_path / "fresh").load_state(payload, "x")
    assert isinstance(CheckpointError("x"), GanzooError)


# -- data ------------------------------------------------------------------------------------------
def test_images_of_different_sizes_in_one_batch_name_the_files(tmp_path: Path) -> None:
    from PIL import Image
    from torch.utils.data import DataLoader

    from ganzoo.data.aligned import AlignedDataset
    from ganzoo.data.collate import collate_items
    from ganzoo.errors import DataError

    (tmp_path / "train").mkdir()
    Image.new("RGB", (64, 32)).save(tmp_path / "train" / "a.png")
    Image.new("RGB", (128, 64)).save(tmp_path / "train" / "b.png")
    dataset = AlignedDataset(tmp_path, preprocess="none", flip=False)
    with pytest.raises(DataError, match=r"b.png becomes 64x64 after preprocessing, but .*a.png becomes 32x32"):
        next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_items)))
    same_size = AlignedDataset(tmp_path, preprocess="resize_and_crop", load_size=32, crop_size=32)
    batch = next(iter(DataLoader(same_size, batch_size=2, collate_fn=collate_items)))
    assert batch["A"].shape == (2, 3, 32, 32) and batch["A_path"][1].endswith("b.png")


# -- recipes through the command line ---------------------------------------------------------------
@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r["train"].update(batch_sise=2), "did you mean 'batch_size'"),
    (lambda r: r["train"].update(batch_size="two"), "train.batch_size"),
    (lambda r: r["train"].update(batch_size=0), "train.batch_size"),
    (lambda r: r["model"]["networks"]["D"].update(input_nc=3), "model.networks.D.input_nc"),
    (lambda r: r.update(base="r.yaml"), "inheritance cycle"),
    (lambda r: r.update(base="missing.yaml"), "missing.yaml does not exist"),
])
def test_recipe_mistakes_exit_2_on_one_screen(data_root: Path, tmp_path: Path, mutate: Any, expected: str) -> None:
    raw = tiny_recipe("pix2pix", data_root)
    mutate(raw)
    path = write_recipe(raw, tmp_path / "r.yaml")
    result = invoke(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert len(result.output.splitlines()) <= 6
    assert not (tmp_path / "run").exists()


def test_persistent_workers_train_exactly_like_the_main_process(data_root: Path, tmp_path: Path) -> None:
    """data.workers > 0 keeps its workers across epochs and still gives each epoch's own augmentation."""
    def final_weights(workers: int, out: Path) -> dict[str, torch.Tensor]:
        raw = tiny_recipe("pix2pix", data_root, max_steps=10)  # 2.5 epochs of 4 batches
        raw["data"]["workers"] = workers
        raw["log"] = {"every": 5, "samples_every": 100, "checkpoint_every": 100, "keep_last": 1}
        t = Trainer(resolve_recipe(raw), out, show_progress=False)
        assert t.loader.persistent_workers is (workers > 0)
        t.run()
        return {k: v.clone() for k, v in t.model.networks["G"].state_dict().items()}

    serial, parallel = final_weights(0, tmp_path / "serial"), final_weights(2, tmp_path / "parallel")
    assert all(torch.equal(serial[k], parallel[k]) for k in serial)
