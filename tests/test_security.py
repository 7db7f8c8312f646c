"""Checkpoints never run code: tensors and plain data only, always loaded with ``weights_only=True``."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import ganzoo
from ganzoo.cli import main as ganzoo_main
from ganzoo.errors import CheckpointError
from ganzoo.training.checkpoint import FORMAT, VERSION, CheckpointDir, load_checkpoint

MARKER_NAME = "code-ran"


class RunsCode:
    """Unpickling this calls ``Path(marker).touch()``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def crafted(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A checkpoint-looking file that runs code when unpickled without ``weights_only``."""
    marker = tmp_path / MARKER_NAME
    path = tmp_path / f"evil_{kind}.pt"
    content = {"format": FORMAT, "version": VERSION, "step": 1, "networks": {}, "payload": RunsCode(marker)}
    if kind == "torch-zip":
        torch.save(content, path)
    else:  # a bare pickle stream, torch's legacy format
        path.write_bytes(pickle.dumps(content))
    return path, marker


def test_crafted_files_really_would_run_code(tmp_path: Path) -> None:
    path, marker = crafted(tmp_path, "torch-zip")
    torch.load(path, weights_only=False)  # the unsafe way, to prove the test files are armed
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_a_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path: Path, kind: str) -> None:
    path, marker = crafted(tmp_path, kind)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"refused to load {path}") and "could run code" in message
    assert "nothing in it was executed" in message
    assert not marker.exists()


def test_resume_refuses_instead_of_falling_back(tmp_path: Path) -> None:
    """A refused file is not skipped like a corrupt one: someone put code there, the user must know."""
    checkpoints = tmp_path / "run" / "checkpoints"
    CheckpointDir(checkpoints).save({"step": 1, "networks": {}}, 1)
    evil, marker = crafted(tmp_path, "torch-zip")
    (checkpoints / "step_00000002.pt").write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="refused"):
        CheckpointDir(checkpoints).load_latest()
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        ganzoo_main, ["train", "--resume", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2 and "refused to load" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_every_torch_load_in_ganzoo_is_weights_only() -> None:
    package = Path(ganzoo.__file__).parent
    calls = []
    for source in package.rglob("*.py"):
        text = source.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((source.relative_to(package), text[match.start():end + 1]))
    assert calls, "checkpoint loading moved; update this test"
    unsafe = [(str(f), call) for f, call in calls if "weights_only=True" not in call]
    assert not unsafe
