"""Run folders (issue #28, items 3, 6, 12 and 15): one trainer per folder, names that stay in runs/,
a full disk that reads as one, exit code 2 for every user mistake, and a resume with nothing to do
that changes nothing.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fault_injection import SHAPES_PAIRED, subprocess_env, tiny_recipe, write_recipe
from ganzoo.cli import main as ganzoo_main
from ganzoo.cli.options import safe_folder_name
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import RunFolderError
from ganzoo.training import checkpoint as checkpoint_module
from ganzoo.training.run_lock import LOCK_FILE, RunLock


def invoke(args: list[str]) -> Any:
    return CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, args)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run_folder") / "paired"
    ensure_shapes(root, **SHAPES_PAIRED)
    return root


def recipe_file(data_root: Path, folder: Path, name: str = "tiny", steps: int = 2) -> Path:
    raw = tiny_recipe("pix2pix", data_root, max_steps=steps)
    raw["name"] = name
    raw["log"] = {"every": 1, "samples_every": 100, "checkpoint_every": 1, "keep_last": 2}
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(raw, folder / "tiny.yaml")


@pytest.fixture(scope="module")
def finished_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("finished")
    run = base / "run"
    result = invoke(["train", str(recipe_file(data_root, base)), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    return run


# -- item 6: one training process per run folder -----------------------------------------------------
def test_run_lock_is_exclusive_names_the_holder_and_is_released(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run").acquire()
    with pytest.raises(RunFolderError, match=rf"is in use: process {os.getpid()} on .* is training in it") as info:
        RunLock(tmp_path / "run").acquire()
    assert info.value.exit_code == 2
    first.release()
    with RunLock(tmp_path / "run") as again:
        assert again.held
    assert not again.held


def test_run_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    """flock dies with its process: a SIGKILLed trainer leaves no stale lock to clean up by hand."""
    code = ("import sys, time; from ganzoo.training.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE,
                             env=subprocess_env(), text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=f"process {child.pid}"):
            RunLock(tmp_path / "run").acquire()
    finally:
        child.kill()
        child.wait()
    RunLock(tmp_path / "run").acquire().release()
    assert (tmp_path / "run" / LOCK_FILE).exists()  # the file may stay; only the flock matters


def test_a_second_train_or_resume_in_a_busy_folder_exits_2_and_changes_nothing(data_root: Path, tmp_path: Path,
                                                                              finished_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    busy = RunLock(run).acquire()  # another `ganzoo train` is training in it
    try:
        fresh = invoke(["train", str(recipe_file(data_root, tmp_path / "r")), "--out", str(tmp_path / "new"),
                        "--no-progress"])
        assert fresh.exit_code == 0, fresh.output  # another folder is fine
        RunLock(tmp_path / "other").acquire()
        second = invoke(["train", str(recipe_file(data_root, tmp_path / "r")), "--out", str(tmp_path / "other"),
                         "--no-progress"])
        assert second.exit_code == 2 and "is in use" in second.output, second.output
        resumed = invoke(["train", "--resume", str(run), "--no-progress", "--set", "train.max_steps=4"])
        assert resumed.exit_code == 2 and "is in use" in resumed.output, resumed.output
        assert "free some disk space" not in resumed.output
    finally:
        busy.release()
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before


def test_two_real_train_processes_in_one_folder_one_refuses(data_root: Path, tmp_path: Path) -> None:
    import signal

    recipe = recipe_file(data_root, tmp_path, steps=100000)  # trains until told to stop
    run = tmp_path / "run"
    args = [sys.executable, "-m", "ganzoo", "train", str(recipe), "--out", str(run), "--no-progress"]
    first = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "latest.pt").exists():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.1)
        second = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=300)
    # While the first trains, the folder is in use: that message wins over "already holds a run".
    assert second.returncode == 2 and "is in use" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 130, first.stdout.read() if first.stdout else ""


# -- item 12: a recipe name is never a path ------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [("../../x", "x"), ("/abs/path", "abs_path"), ("..", "tiny"),
                                            ("~", "tiny"), ("a/../../b", "a_.._.._b"), ("ok-name_1.2", "ok-name_1.2"),
                                            ("naïve", "naïve"), ("x\n\x00y", "x_y"), ("", "tiny")])
def test_safe_folder_name_keeps_a_name_inside_its_folder(name: str, expected: str) -> None:
    assert safe_folder_name(name, "tiny") == expected


@pytest.mark.parametrize("name", ["..", "../../x", "/abs"])
def test_default_out_stays_in_runs_whatever_the_name(data_root: Path, tmp_path: Path, name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe schema refuses such names (exit 2); if one ever passes, the default --out still
    stays a single folder under runs/ (safe_folder_name). Either way nothing lands outside runs/."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    recipe = recipe_file(data_root, tmp_path / "recipes", name=name, steps=1)
    result = invoke(["train", str(recipe), "--no-progress"])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 0:
        assert (work / "runs" / safe_folder_name(name, "tiny") / "checkpoints").is_dir()
    assert sorted(p.name for p in work.iterdir()) in ([], ["runs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipes", "work"]
    assert not Path("/abs").exists()


# -- item 15: user mistakes exit 2; a resume with nothing to do changes nothing ----------------------
def test_run_folder_mistakes_exit_2(data_root: Path, tmp_path: Path, finished_run: Path) -> None:
    recipe = recipe_file(data_root, tmp_path)
    occupied = invoke(["train", str(recipe), "--out", str(finished_run), "--no-progress"])
    assert occupied.exit_code == 2 and "already holds a run" in occupied.output
    mismatch = invoke(["train", "--resume", str(finished_run), "--out", str(tmp_path / "elsewhere")])
    assert mismatch.exit_code == 2 and "different folders" in mismatch.output
    refused = invoke(["train", "--resume", str(finished_run), "--set", "model.networks.G.ngf=8"])
    assert refused.exit_code == 2 and "cannot change when resuming" in refused.output
    nothing = invoke(["train", "--resume", str(tmp_path / "no_run")])
    assert nothing.exit_code == 2 and "Traceback" not in nothing.output


def test_a_resume_with_nothing_to_do_leaves_summary_and_checkpoints_alone(tmp_path: Path, finished_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["losses"]
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    result = invoke(["train", "--resume", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output
    assert json.loads((run / "summary.json").read_text()) == summary
    after = {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    assert after == before


# -- item 3: a full disk mid-run, end to end through `ganzoo train` -----------------------------------
def test_full_disk_at_a_checkpoint_is_one_message_not_masked_by_tensorboard(data_root: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's writer raises RuntimeError 'unexpected pos' on ENOSPC, then TensorBoard's close raises its own
    ENOSPC in the trainer's finally: the user sees the CheckpointError (exit 2), naming the survivor."""
    from torch.utils.tensorboard import SummaryWriter

    real_save = checkpoint_module.torch.save
    real_usage = shutil.disk_usage
    state = {"saves": 0, "full": False}
    usage = namedtuple("usage", "total used free")

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        state["saves"] += 1
        if state["saves"] >= 3:  # step 1 and step 2 are written, the third write hits the full disk
            state["full"] = True
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4352 vs 4288")
        real_save(obj, f, *args, **kwargs)

    def disk_usage(path: Any) -> Any:
        return usage(10**12, 10**12, 0) if state["full"] else real_usage(path)

    def close(self: Any) -> None:
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", disk_usage)
    monkeypatch.setattr(SummaryWriter, "close", close)
    run = tmp_path / "run"
    result = invoke(["train", str(recipe_file(data_root, tmp_path, steps=4)), "--out", str(run), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "could not write checkpoint" in result.output and "No space left on device" in result.output
    assert "step_00000002.pt is intact" in result.output and "free some disk space" in result.output
    assert "Traceback" not in result.output and "unexpected pos 4352" in result.output


def test_an_allocation_failure_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What torch raises when a recipe asks for terabytes: RuntimeError "DefaultCPUAllocator: can't allocate"."""
    from ganzoo.cli import list_cmd

    def huge(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 140737488355328 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(list_cmd, "list_components", huge, raising=False)
    result = invoke(["list"])
    if "can't allocate" not in result.output:
        pytest.skip("ganzoo list no longer calls list_components; the handler is tested through it only")
    assert result.exit_code == 2 and "ran out of memory" in result.output and "Traceback" not in result.output


def test_a_full_or_read_only_disk_in_any_command_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`ganzoo sample/eval/export/data ...` writing on a full or read-only disk: the OSError's words and file."""
    from ganzoo.cli import list_cmd

    for code, words in ((errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")):
        def fail(*args: Any, **kwargs: Any) -> None:
            raise OSError(code, words, str(tmp_path / "out.png"))

        monkeypatch.setattr(list_cmd, "list_components", fail)
        result = invoke(["list"])
        assert result.exit_code == 1 and words in result.output and "out.png" in result.output, result.output
        assert "Traceback" not in result.output


def test_a_recipe_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    from test_hostile_data import time_limit

    for command in (["info", str(fifo)], ["train", str(fifo), "--out", str(tmp_path / "run")]):
        with time_limit(10):  # the old code waited in open() for a writer that never comes
            result = invoke(command)
        assert result.exit_code == 2 and "is a FIFO (named pipe), not a recipe file" in result.output, result.output


@pytest.mark.parametrize("damage", ["ema string", "ema networks list", "step string", "network value str",
                                    "recipe train str"])
def test_a_checkpoint_with_malformed_fields_is_an_error_not_a_traceback(tmp_path: Path, finished_run: Path,
                                                                        damage: str) -> None:
    """Next to item 2: fields a crafted or damaged checkpoint can get wrong, for ganzoo.load and sample."""
    import copy

    import torch

    import ganzoo
    from ganzoo.errors import GanzooError
    from ganzoo.training.checkpoint import atomic_save

    good = torch.load(finished_run / "checkpoints" / "latest.pt", weights_only=True)
    payload = copy.deepcopy(good)
    first_key = next(iter(payload["networks"]["G"]))
    if damage == "ema string":
        payload["ema"] = "x"
    elif damage == "ema networks list":
        payload["ema"] = {"networks": [1]}
    elif damage == "step string":
        payload["step"] = "abc"
    elif damage == "network value str":
        payload["networks"]["G"][first_key] = "x"
    else:
        payload["recipe"]["train"] = "x"
    path = atomic_save(payload, tmp_path / "bad.pt")
    with pytest.raises(GanzooError):
        ganzoo.load(path, device="cpu")
    result = invoke(["sample", str(path), "--input", str(tmp_path), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_ctrl_c_while_the_command_is_still_importing_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Item 15: Ctrl-C during `import torch` used to print a KeyboardInterrupt traceback."""
    import signal

    child = subprocess.Popen([sys.executable, "-m", "ganzoo", "list"], env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the command needs well over a second to import torch and its components
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    if child.returncode == 0:
        pytest.skip("the command finished before the signal arrived")
    assert child.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
