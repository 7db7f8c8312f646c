"""CheckpointDir and atomic_save: atomic writes, retention, newest-complete-first loading, clear errors."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from ganzoo.errors import CheckpointError
from ganzoo.training import checkpoint as checkpoint_module
from ganzoo.training.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointDir,
    atomic_save,
    estimate_checkpoint_bytes,
    load_checkpoint,
    load_network_state,
)


RECIPE = {"name": "t", "model": {"type": "pix2pix"}, "plugins": []}


def payload(step: int) -> dict[str, Any]:
    return {"step": step, "networks": {"G": {"w": torch.full((4,), float(step))}}, "rng": {"torch": torch.ones(3)},
            "recipe": RECIPE}


def steps(d: CheckpointDir) -> list[int]:
    return [s for s, _ in d.step_files()]


def test_atomic_save_fsyncs_then_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(checkpoint_module.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(checkpoint_module.os, "replace",
                        lambda a, b: (calls.append(f"replace {Path(b).name}"), real_replace(a, b))[1])
    atomic_save({"x": torch.ones(2)}, tmp_path / "a.pt")
    monkeypatch.undo()
    # The file's data reaches the disk before the rename makes it visible; then the folder entry.
    assert calls[:2] == ["fsync", "replace a.pt"] and calls[2:] == ["fsync"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.pt"
    atomic_save({"v": torch.zeros(2)}, target)

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError):
        atomic_save({"v": torch.ones(2)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_keep_last_k_plus_milestones(tmp_path: Path) -> None:
    d = CheckpointDir(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        d.save(payload(step), step)
    d.save(payload(4), 4, milestone=True)
    for step in (5, 6, 7):
        d.save(payload(step), step)
    assert steps(d) == [4, 6, 7]  # the milestone survives retention
    assert d.milestones() == [4]
    assert load_checkpoint(d.latest)["step"] == 7
    assert os.path.samefile(d.latest, tmp_path / "step_00000007.pt")


def test_truncated_newest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path: Path) -> None:
    d = CheckpointDir(tmp_path, keep_last=3)
    for step in (1, 2, 3):
        d.save(payload(step), step)
    newest = tmp_path / "step_00000003.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # latest.pt is the same inode: truncated too
    warnings: list[str] = []
    loaded, path = d.load_latest(warn=warnings.append)
    assert loaded["step"] == 2 and path.name == "step_00000002.pt"
    assert len(warnings) == 1 and "step_00000003.pt is corrupt or truncated" in warnings[0]
    with pytest.warns(UserWarning, match="skipping unusable checkpoint"):
        d.load_latest()


def test_newest_complete_step_file_beats_a_lagging_latest(tmp_path: Path) -> None:
    d = CheckpointDir(tmp_path)
    d.save(payload(1), 1)
    atomic_save({"format": FORMAT, "version": VERSION, **payload(2)}, tmp_path / "step_00000002.pt")
    assert d.load_latest()[0]["step"] == 2


def test_nothing_usable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        CheckpointDir(tmp_path).load_latest()
    (tmp_path / "step_00000001.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        CheckpointDir(tmp_path).load_latest(warn=lambda m: None)


def test_foreign_and_future_files_are_named(tmp_path: Path) -> None:
    torch.save({"G": torch.ones(1)}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match="not a ganzoo checkpoint"):
        load_checkpoint(tmp_path / "official.pth")
    torch.save({"format": FORMAT, "version": VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer ganzoo"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".step_00000005.pt.tmp-999999999"  # no such process
    alive = tmp_path / f".step_00000006.pt.tmp-{os.getpid()}"
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    removed = CheckpointDir(tmp_path).remove_stale_temp_files()
    assert removed == [dead] and alive.exists() and not dead.exists()


def test_save_failure_is_a_checkpoint_error_naming_the_survivor(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    d = CheckpointDir(tmp_path)
    d.save(payload(1), 1)
    real_replace = os.replace

    def no_space(src: Any, dst: Any) -> None:
        if Path(dst).name == "step_00000002.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", no_space)
    with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint "
                                              "step_00000001.pt is intact"):
        d.save(payload(2), 2)
    monkeypatch.undo()
    assert steps(d) == [1] and load_checkpoint(d.latest)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "step_00000001.pt"]


def test_space_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    d = CheckpointDir(tmp_path, keep_last=3)
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda p: usage(0, 0, 3 * 2**20))
    with pytest.raises(CheckpointError, match="not enough disk space"):
        d.check_space(2 * 2**20)
    with pytest.warns(UserWarning, match="only 3.0 MiB free"):
        d.check_space(1 * 2**20)
    d.check_space(2**10)  # plenty


def test_size_estimate_counts_future_adam_moments() -> None:
    net = torch.nn.Linear(10, 10)  # 110 float32 parameters = 440 bytes
    opt = torch.optim.Adam(net.parameters())
    state = {"networks": {"net": net.state_dict()}}
    before = estimate_checkpoint_bytes(state, [opt])
    net(torch.ones(1, 10)).sum().backward()
    opt.step()
    after = estimate_checkpoint_bytes({**state, "optimizers": opt.state_dict()}, [opt])
    assert before - 64 * 1024 == 440 * 3
    assert after >= before


def test_network_mismatch_names_network_and_key() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(CheckpointError, match=r"network G in ckpt: 0.weight has shape \(4, 2\)"):
        load_network_state("G", net, {"0.weight": torch.ones(4, 2), "0.bias": torch.ones(3)}, "ckpt")
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\), e.g. '0.bias'"):
        load_network_state("G", net, {"0.weight": torch.ones(3, 2)}, "ckpt")


# -- issue #28 item 2: every damaged file falls back; only a complete pickle stream carrying code stops ----
def _damaged(kind: str, good: Path) -> bytes:
    """A file of ``kind`` in place of a checkpoint (built from the good checkpoint ``good``)."""
    import zipfile

    data = good.read_bytes()
    if kind == "empty":
        return b""
    if kind == "text":
        return b"hello world\nthis is not a checkpoint\n"
    if kind == "cut-data-pkl":  # a complete, valid zip whose data.pkl stream stops halfway
        import io

        out = io.BytesIO()
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                content = src.read(info.filename)
                if info.filename.endswith("data.pkl"):
                    content = content[: len(content) // 2]
                dst.writestr(info, content)
        return out.getvalue()
    if kind in ("flipped-pickle-byte", "flipped-tensor-byte"):  # one byte damaged on disk: CRC no longer matches
        with zipfile.ZipFile(good) as archive:
            member = "data.pkl" if kind == "flipped-pickle-byte" else "data/0"
            name = next(n for n in archive.namelist() if n.endswith(member))
            content = archive.read(name)
        at = data.index(content) + len(content) // 2
        return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:]
    if kind == "truncated":
        return data[: len(data) // 3]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["empty", "text", "cut-data-pkl", "flipped-pickle-byte", "flipped-tensor-byte",
                                  "truncated"])
def test_every_kind_of_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path, kind: str) -> None:
    d = CheckpointDir(tmp_path, keep_last=3)
    for step in (1, 2):
        d.save(payload(step), step)
    newest = tmp_path / "step_00000002.pt"
    damaged = _damaged(kind, newest)
    (tmp_path / "latest.pt").unlink()
    newest.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="corrupt") as info:
        load_checkpoint(newest)
    assert not info.value.message.startswith("refused") and "weights_only" not in str(info.value)
    warnings: list[str] = []
    loaded, path = d.load_latest(warn=warnings.append)
    assert loaded["step"] == 1 and path.name == "step_00000001.pt"
    assert len(warnings) == 1 and "step_00000002.pt" in warnings[0]


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_a_bare_pickle_carrying_code_at_any_protocol_is_refused_and_stops_the_resume(tmp_path: Path,
                                                                                      protocol: int) -> None:
    import pickle

    marker = tmp_path / "ran"

    class Touch:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    d = CheckpointDir(tmp_path)
    d.save(payload(1), 1)
    (tmp_path / "step_00000002.pt").write_bytes(pickle.dumps({"format": FORMAT, "x": Touch()}, protocol=protocol))
    with pytest.raises(CheckpointError, match="^refused to load"):
        d.load_latest(warn=lambda m: None)
    assert not marker.exists()
    # the classic hand-written protocol-0 payload
    (tmp_path / "step_00000002.pt").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(CheckpointError, match="^refused to load.*os.system"):
        d.load_latest(warn=lambda m: None)
    assert not marker.exists()


@pytest.mark.parametrize("change", ["no recipe", "string recipe", "no rng", "no step", "networks list"])
def test_a_checkpoint_missing_what_resume_reads_is_skipped_with_a_warning(tmp_path: Path, change: str) -> None:
    d = CheckpointDir(tmp_path)
    d.save(payload(1), 1)
    broken = payload(2)
    if change == "no recipe":
        del broken["recipe"]
    elif change == "string recipe":
        broken["recipe"] = "model: pix2pix"
    elif change == "no rng":
        del broken["rng"]
    elif change == "no step":
        del broken["step"]
    else:
        broken["networks"] = [1, 2]
    atomic_save({"format": FORMAT, "version": VERSION, **broken}, tmp_path / "step_00000002.pt")
    warnings: list[str] = []
    loaded, path = d.load_latest(warn=warnings.append)
    assert loaded["step"] == 1 and len(warnings) == 1 and "step_00000002.pt" in warnings[0]
    (tmp_path / "step_00000001.pt").unlink()
    (tmp_path / "latest.pt").unlink()
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        d.load_latest(warn=lambda m: None)


def test_read_tensor_file_never_suggests_weights_only_false(tmp_path: Path) -> None:
    from ganzoo.training.checkpoint import read_tensor_file

    path = tmp_path / "weights.pth"
    import pickle

    path.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=0))  # plain data, but not in torch's format
    with pytest.raises(CheckpointError) as info:
        read_tensor_file(path, "LPIPS weights")
    assert "weights_only" not in str(info.value) and "LPIPS weights" in str(info.value)


# -- issue #28 item 3: torch's zip writer on a full disk ----------------------------------------------------
def test_torch_writer_failure_on_a_full_disk_is_a_checkpoint_error(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real ENOSPC torch raises RuntimeError("[enforce fail at inline_container.cc] unexpected pos"),
    not an OSError: it must still become the promised CheckpointError naming the surviving checkpoint."""
    from collections import namedtuple

    d = CheckpointDir(tmp_path)
    d.save(payload(1), 1)

    def full_disk_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4352 vs 4288")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk_save)
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 0))
    with pytest.raises(CheckpointError) as info:
        d.save(payload(2), 2)
    monkeypatch.undo()
    assert "No space left on device" in info.value.message and "step_00000001.pt is intact" in info.value.message
    assert "free some disk space" in (info.value.hint or "")
    assert steps(d) == [1] and sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "step_00000001.pt"]


def test_a_programming_error_inside_torch_save_is_not_disguised_as_a_disk_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("something else entirely")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken)
    with pytest.raises(RuntimeError, match="something else"):
        CheckpointDir(tmp_path).save(payload(1), 1)


def test_run_log_close_never_masks_the_error_on_its_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """TensorBoard's own ENOSPC while closing must not replace the CheckpointError being raised."""
    from ganzoo.errors import GanzooError
    from ganzoo.training.run_log import RunLog

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    for in_flight in (True, False):
        log = RunLog(tmp_path / f"run{in_flight}", {"name": "x"}, enabled=True)
        log.last_losses = {"G": 1.0}
        monkeypatch.setattr(log.writer, "close", no_space)
        if in_flight:
            with pytest.raises(CheckpointError, match="could not write"):
                try:
                    raise CheckpointError("could not write checkpoint: No space left on device")
                finally:
                    log.close()
            assert "could not finish the TensorBoard logs" in capsys.readouterr().err
        else:
            with pytest.raises(GanzooError, match="could not finish the TensorBoard logs.*No space left"):
                log.close()
