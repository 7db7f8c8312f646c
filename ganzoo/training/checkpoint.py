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
import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import CheckpointError

FORMAT = "ganzoo-checkpoint"
VERSION = 1
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


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


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ganzoo checkpoint safely (``weights_only=True``), with a clear error when it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects beyond tensors and plain data, "
            f"which could run code ({str(exc).splitlines()[0]})",
            hint="only load checkpoints you trust with other tools; ganzoo checkpoints never need this",
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ganzoo checkpoint (no '{FORMAT}' marker)",
                              hint="official .pth weights are converted with `ganzoo import-official`")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer ganzoo (format {payload['version']} > {VERSION})")
    return payload


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
        """Write ``step_N.pt`` atomically, point ``latest.pt`` at it, and prune old ones."""
        payload = {"format": FORMAT, "version": VERSION, **payload, "milestone": milestone}
        path = atomic_save(payload, self.root / f"step_{step:08d}.pt")
        _link_or_copy(path, self.latest)
        if milestone:
            atomic_save({"format": FORMAT, "version": VERSION, "milestones": self.milestones() + [step]},
                        self.root / "milestones.pt")
        self.prune()
        return path

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

    def load_latest(self) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint that loads; corrupt ones are skipped with a warning."""
        candidates = [self.latest] if self.latest.exists() else []
        candidates += [p for _, p in reversed(self.step_files())]
        errors = []
        for path in candidates:
            try:
                return load_checkpoint(path), path
            except CheckpointError as exc:
                if "refused" in exc.message:
                    raise
                errors.append(exc.message)
                warnings.warn(f"skipping unusable checkpoint: {exc.message}", stacklevel=2)
        if errors:
            raise CheckpointError(f"no usable checkpoint in {self.root}: " + "; ".join(errors))
        raise CheckpointError(f"no checkpoint in {self.root}",
                              hint="a run writes its first checkpoint after log.checkpoint_every steps or on Ctrl-C")
