"""Checkpoints that cannot be half-written, cannot run code, and say clearly what does not fit.

A checkpoint is one ``torch.save`` file of tensors and plain data: networks, optimizers,
schedulers, model state (image pools, grad scalers), every RNG, the step and the resolved recipe.
Writes go to a temporary file that is fsynced and renamed, so a crash leaves the previous
checkpoint intact; ``latest.pt`` is a hard link to the newest one. Loading always uses
``weights_only=True``: a file carrying pickled code is refused.
"""
from __future__ import annotations

import os
import pickle
import pickletools
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import CheckpointError

FORMAT = "ganzoo-checkpoint"
VERSION = 1
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
_TEMP_FILE = re.compile(r"^\..+\.tmp-(\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` via a temporary file, fsync and rename (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links get a copy
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ganzoo checkpoint safely (``weights_only=True``), with a clear error when it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are noise here
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _carries_code(path):
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_unpickling_detail(exc)})") from None
        raise CheckpointError(
            f"refused to load {path}: it holds pickled Python objects beyond tensors and plain data, and "
            f"unpickling them could run code ({_unpickling_detail(exc)}); nothing in it was executed",
            hint="ganzoo checkpoints never need this; if you made the file yourself with other tools and trust "
                 "it, re-save its tensors with torch.save(state_dict)",
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ganzoo checkpoint (no '{FORMAT}' marker)",
                              hint="official .pth weights are converted with `ganzoo import-official`")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer ganzoo (format {payload['version']} > {VERSION})")
    return payload


# Opcodes that import or call something: a pickle with none of them is only plain data.
_CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"})


def _carries_code(path: Path) -> bool:
    """Whether a file the weights-only loader rejected holds pickled code, rather than being damaged.

    A complete torch zip archive that the weights-only unpickler rejects carries objects beyond
    tensors and plain data. A file that is not a zip is a torn archive (ganzoo only writes zips) unless
    it is a bare pickle stream (starts with the PROTO opcode) that imports or calls something.
    """
    if zipfile.is_zipfile(path):
        return True
    data = path.read_bytes()
    position = 0
    while position < len(data) and data[position:position + 1] == b"\x80":
        try:
            for opcode, _, at in pickletools.genops(data[position:]):
                if opcode.name in _CODE_OPCODES:
                    return True
                if opcode.name == "STOP":
                    position += at + 1
                    break
            else:
                return False
        except Exception:  # a torn stream: what was readable held no code
            return False
    return False


def _unpickling_detail(exc: BaseException) -> str:
    """The informative line of torch's weights-only refusal (which global or opcode it met)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line:
            return line
    return "not a plain-data pickle"


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a nested structure of dicts, lists and tuples (a checkpoint's size, roughly)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def estimate_checkpoint_bytes(state: dict[str, Any], optimizers: Iterable[torch.optim.Optimizer]) -> int:
    """The size a checkpoint of ``state`` will reach once the optimizers hold their moments.

    Before the first step an optimizer has no state yet; Adam later keeps two tensors per
    parameter, so each parameter without state is counted twice more (an upper bound for SGD).
    """
    extra = 0
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                if p not in opt.state:
                    extra += 2 * p.numel() * p.element_size()
    return tensor_bytes(state) + extra + 64 * 1024  # pickled structure and zip headers


def load_network_state(name: str, net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``net.load_state_dict(state)``, with an error naming the network and key that do not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} key(s), e.g. {missing[0]!r}")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[0]!r}")
        raise CheckpointError(f"network {name} in {source} does not match the recipe's {name}: "
                              + "; ".join(detail),
                              hint="the checkpoint was made by another recipe (different component or depth)")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"network {name} in {source}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the recipe's network",
                hint="a width, channel count or nz differs between the checkpoint's recipe and this one")
    net.load_state_dict(state)


class CheckpointDir:
    """The ``checkpoints/`` folder of a run: ``step_N.pt`` files, ``latest.pt``, and retention."""

    def __init__(self, root: str | os.PathLike[str], keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    @property
    def latest(self) -> Path:
        return self.root / "latest.pt"

    def step_files(self) -> list[tuple[int, Path]]:
        """Periodic checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _STEP_FILE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def save(self, payload: dict[str, Any], step: int, milestone: bool = False) -> Path:
        """Write ``step_N.pt`` atomically, point ``latest.pt`` at it, and prune old ones.

        A failed write (disk full, folder gone) raises a CheckpointError and leaves every earlier
        checkpoint as it was: nothing is renamed over a good file until the new one is complete.
        """
        payload = {"format": FORMAT, "version": VERSION, **payload, "milestone": milestone}
        target = self.root / f"step_{step:08d}.pt"
        try:
            path = atomic_save(payload, target)
            _link_or_copy(path, self.latest)
            if milestone:
                atomic_save({"format": FORMAT, "version": VERSION, "milestones": self.milestones() + [step]},
                            self.root / "milestones.pt")
        except OSError as exc:
            previous = [p.name for s, p in self.step_files() if s != step and p.exists()]
            kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
            raise CheckpointError(
                f"could not write checkpoint {target}: {exc.strerror or exc}; {kept}",
                hint="free some disk space (or fix the folder's permissions), then resume with "
                     f"`ganzoo train --resume {self.root.parent}`",
            ) from None
        self.prune()
        return path

    def check_space(self, estimated_bytes: int) -> None:
        """Refuse to start when the disk cannot hold even one more checkpoint of ``estimated_bytes``.

        Retention needs ``keep_last + 1`` checkpoints at a time (the new one is complete before the
        oldest is removed); less free space than that is only a warning, since the user may prune.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        needed = 2 * estimated_bytes  # the new file, plus the temp copy of latest.pt when links fail
        comfortable = (self.keep_last + 1) * estimated_bytes
        mib = 1024 * 1024
        if free < needed:
            raise CheckpointError(
                f"not enough disk space for checkpoints in {self.root}: {free / mib:.1f} MiB free, each "
                f"checkpoint needs about {estimated_bytes / mib:.1f} MiB",
                hint="free some space or choose another --out folder")
        if free < comfortable:
            warnings.warn(f"only {free / mib:.1f} MiB free in {self.root}; keeping {self.keep_last} checkpoints "
                          f"of about {estimated_bytes / mib:.1f} MiB needs {comfortable / mib:.1f} MiB",
                          stacklevel=2)

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temp files left by a writer that was killed mid-write (its process is gone)."""
        removed = []
        if not self.root.is_dir():
            return removed
        for p in self.root.iterdir():
            m = _TEMP_FILE.match(p.name)
            if m and not _process_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    def milestones(self) -> list[int]:
        path = self.root / "milestones.pt"
        if not path.is_file():
            return []
        try:
            return list(torch.load(path, weights_only=True).get("milestones", []))
        except Exception:  # a damaged index only loses retention hints, never checkpoints
            return []

    def prune(self) -> None:
        keep = set(self.milestones())
        files = self.step_files()
        removable = [(s, p) for s, p in files if s not in keep]
        for _, p in removable[: max(0, len(removable) - self.keep_last)]:
            p.unlink(missing_ok=True)

    def load_latest(self, warn: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint that loads; corrupt or truncated ones are skipped with a warning.

        Step files are tried newest first and ``latest.pt`` last: a kill between writing
        ``step_N.pt`` and relinking ``latest.pt`` leaves ``latest.pt`` one checkpoint behind.
        A file carrying pickled code is never skipped silently: it stops the resume. ``warn``
        receives each warning (default: :func:`warnings.warn`).
        """
        warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
        candidates = [p for _, p in reversed(self.step_files())]
        if self.latest.exists():
            candidates.append(self.latest)
        errors = []
        for path in candidates:
            try:
                return load_checkpoint(path), path
            except CheckpointError as exc:
                if exc.message.startswith("refused"):
                    raise
                errors.append(exc.message)
                warn(f"skipping unusable checkpoint: {exc.message}")
        if errors:
            raise CheckpointError(f"no usable checkpoint in {self.root}: " + "; ".join(errors))
        raise CheckpointError(f"no checkpoint in {self.root}",
                              hint="a run writes its first checkpoint after log.checkpoint_every steps or on Ctrl-C")
