"""Checkpoints that cannot be half-written, cannot run code, and say clearly what does not fit.

A checkpoint is one ``torch.save`` file of tensors and plain data: networks, optimizers,
schedulers, model state (image pools, grad scalers), every RNG, the step and the resolved recipe.
Writes go to a temporary file that is fsynced and renamed, so a crash leaves the previous
checkpoint intact; ``latest.pt`` is a hard link to the newest one. Loading always uses
``weights_only=True``: a file carrying pickled code is refused.
"""
from __future__ import annotations

import errno
import os
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


def _first_line(exc: BaseException) -> str:
    """A one-line description of ``exc`` that never fails (an empty message gives the exception's type).

    For torch's weights-only refusals it is the line naming what stopped the reader, without torch's
    advice to retry with ``weights_only=False`` (which would run the file's code).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip() or \
                (lines[index + 1] if index + 1 < len(lines) else "")
            lines = [rest.split(" Please use", 1)[0].split(". Please", 1)[0] or "not a plain-data pickle"]
            break
    else:
        if lines and "weights_only" in lines[0]:
            lines = ["not a plain-data pickle"]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _looks_like_zip(path: Path) -> bool:
    """``zipfile.is_zipfile``, which itself raises on some damaged end records (those count as a zip)."""
    try:
        return zipfile.is_zipfile(path)
    except Exception:  # noqa: BLE001
        return True


def _verify_zip_checksums(path: Path) -> None:
    """Raise when a member of a torch zip archive fails its CRC: torch itself never checks them, so a
    damaged byte inside a tensor would otherwise load as a silently wrong weight."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path} is corrupt ({type(exc).__name__}: {_first_line(exc)})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: {bad} fails its checksum (damaged on disk or in transfer)",
                              hint="a damaged copy; use another copy or an earlier checkpoint")


def _refusal(path: Path, detail: str, what: str = "checkpoint") -> CheckpointError:
    return CheckpointError(
        f"refused to load {path}: it holds pickled Python objects beyond tensors and plain data, and "
        f"unpickling them could run code ({detail}); nothing in it was executed",
        hint=f"ganzoo {what}s never need this; if you made the file yourself with other tools and trust "
             "it, re-save its tensors with torch.save(state_dict)",
    )


def read_tensor_file(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure a :class:`CheckpointError`.

    The one way ganzoo reads a ``.pt``/``.pth`` file (checkpoints, official weights, metric backbones).
    A file that carries pickled code is *refused* (the message starts with ``refused to load``; nothing
    runs); any other failure, whatever torch raises for it (an empty file, a text file, a torn or
    damaged archive), is *corrupt*. The message never suggests ``weights_only=False``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is not a regular file")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are noise here
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise CheckpointError(f"{what} {path} asks for more memory than this machine has; it is corrupt or "
                              "not meant for this machine") from None
    except Exception as exc:  # noqa: BLE001  (torch raises many types for a bad file: all are one of two cases)
        refused = _carries_code(path, exc)
        if refused is not None:
            raise _refusal(path, refused, what) from None
        raise CheckpointError(f"{what} {path} is corrupt or truncated ({type(exc).__name__}: {_first_line(exc)})",
                              hint="a damaged copy or an interrupted write; use another copy") from None
    if _looks_like_zip(path):
        _verify_zip_checksums(path)
    return loaded


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ganzoo checkpoint safely (``weights_only=True``), with a clear error when it cannot be."""
    path = Path(path)
    payload = read_tensor_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ganzoo checkpoint (no '{FORMAT}' marker)",
                              hint="official .pth weights are converted with `ganzoo import-official`")
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path} has an unreadable format version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer ganzoo (format {version} > {VERSION})")
    return payload


def check_model_payload(payload: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The stored recipe of a checkpoint that can rebuild a model; a CheckpointError saying what is missing."""
    recipe = payload.get("recipe")
    if not isinstance(recipe, dict):
        what = "no recipe" if recipe is None else f"a recipe of type {type(recipe).__name__}, not a mapping"
        raise CheckpointError(f"{path} carries {what}, so its networks cannot be rebuilt")
    model = recipe.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("type"), str):
        raise CheckpointError(f"{path}: its stored recipe has no model.type, so its networks cannot be rebuilt")
    networks = payload.get("networks")
    if not isinstance(networks, dict) or not all(isinstance(v, dict) for v in networks.values()):
        raise CheckpointError(f"{path} has no 'networks' mapping of state dicts")
    plugins = recipe.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise CheckpointError(f"{path}: its stored recipe's plugins is not a list of names")
    step = payload.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path} has no valid step count (step={step!r})")
    ema = payload.get("ema")
    if ema is not None and ema != {}:
        averages = ema.get("networks", {}) if isinstance(ema, dict) else None
        if not isinstance(averages, dict) or not all(isinstance(v, dict) for v in averages.values()):
            raise CheckpointError(f"{path}: its weight average ('ema') is not a mapping of state dicts")
        if not isinstance(ema.get("updates", {}), dict):
            raise CheckpointError(f"{path}: its weight average's update counts are not a mapping")
    return recipe


def check_resumable_payload(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """What ``--resume`` reads besides the networks: the step and every RNG (a CheckpointError otherwise).

    Weight-only files (``resumable: false``) pass: the trainer names them with their own message.
    """
    check_model_payload(payload, path)
    if payload.get("resumable") is False:
        return
    step = payload.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path} has no valid step count (step={step!r})")
    if not isinstance(payload.get("rng"), dict):
        raise CheckpointError(f"{path} has no RNG state ('rng'), so the run cannot continue exactly")
    for key in ("optimizers", "schedulers", "model_state"):
        if key in payload and not isinstance(payload[key], dict):
            raise CheckpointError(f"{path}: '{key}' is a {type(payload[key]).__name__}, not a mapping")


# Opcodes that import or call something: a pickle with none of them is only plain data.
_CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"})
_STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                             "SHORT_BINSTRING"})
# What torch's weights-only unpickler says when it meets an object it will not create.
_REFUSAL_WORDS = ("Unsupported global", "unrecognized function", "unsupported class", "Can only build",
                  "not an allowed global")


def _allowed_globals() -> set[str]:
    """``module.name`` of every global torch's weights-only unpickler accepts (empty if torch hides it)."""
    names: set[str] = set()
    try:
        from torch import _weights_only_unpickler

        names.update(_weights_only_unpickler._get_allowed_globals())
    except Exception:  # noqa: BLE001  (a private torch API: without it, every global counts as code)
        pass
    return names


def _scan_pickle(data: bytes, start: int = 0) -> tuple[int | None, list[str]]:
    """Walk one pickle stream from ``start`` without running it.

    Returns ``(end, globals)``: the offset after its STOP opcode (None when the stream is torn or not a
    pickle at all) and the ``module.name`` of each global it imports (``?`` where a stack global's name
    is not a literal). A complete stream is what its writer meant; a torn one is damage.
    """
    globals_: list[str] = []
    strings: list[str] = []
    memo: dict[int, str] = {}
    last: Any = None
    try:
        for opcode, arg, at in pickletools.genops(data[start:]):
            name = opcode.name
            if name in _STRING_OPCODES:
                last = arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else None
                if last is not None:
                    strings.append(last)
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and isinstance(last, str):
                memo[int(arg)] = last
            elif name == "MEMOIZE" and isinstance(last, str):
                memo[len(memo)] = last
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                last = memo.get(int(arg))
                if last is not None:
                    strings.append(last)
            else:
                last = None
            if name in ("GLOBAL", "INST"):
                globals_.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                globals_.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            elif name in _CODE_OPCODES - {"GLOBAL", "INST", "STACK_GLOBAL", "BUILD", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}:
                globals_.append("?")  # OBJ: calls what is on the stack
            if name == "STOP":
                return start + at + 1, globals_
    except Exception:  # noqa: BLE001  (a torn or damaged stream: genops raises several types)
        return None, globals_
    return None, globals_


def _carries_code(path: Path, exc: BaseException) -> str | None:
    """Why a file the weights-only loader failed on is *refused* (it carries code), or None if it is damaged.

    Only a complete pickle stream counts: a torch zip whose ``data.pkl`` passes its CRC check and ends
    with STOP, or a bare/legacy pickle whose stream ends with STOP. Such a stream that imports a global
    torch does not allow, or that torch's refusal names, was written that way on purpose. A stream cut
    short, an invalid opcode, a CRC mismatch, an empty or text file are damage, even when the damage
    happens to read as a strange global (``torc.`` from a cut-off ``torch``).
    """
    refusal = next((line.strip() for line in str(exc).splitlines()
                    if any(word in line for word in _REFUSAL_WORDS)), None)
    streams: list[bytes] = []
    is_zip = _looks_like_zip(path)
    try:
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if len(pickles) != 1:
                    return None
                streams.append(archive.read(pickles[0]))  # BadZipFile on a CRC mismatch: damage
        else:
            streams.append(path.read_bytes())
    except Exception:  # noqa: BLE001
        return None
    data = streams[0]
    allowed = _allowed_globals()
    position, complete_any = 0, False
    while position < len(data):
        end, names = _scan_pickle(data, position)
        if end is None:
            break
        complete_any = True
        foreign = [n for n in names if n not in allowed]
        if foreign:
            return f"it imports {foreign[0]}"
        position = end
        if is_zip:
            break
    if complete_any and refusal is not None:
        return refusal
    return None


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
    if not isinstance(state, dict):
        raise CheckpointError(f"network {name} in {source} is a {type(state).__name__}, not a state dict")
    wrong = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if wrong is not None:
        raise CheckpointError(f"network {name} in {source}: {wrong!r} holds a {type(state[wrong]).__name__}, "
                              "not a tensor", hint="the checkpoint is damaged or was edited")
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} key(s), e.g. {missing[0]!r}")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[0]!r}")
        hint = "the checkpoint was made by another recipe (different component or depth)"
        if any(".parametrizations.weight." in k for k in missing + unexpected):
            hint = f"spectral_norm differs between the checkpoint's {name} and the recipe's"
        raise CheckpointError(f"network {name} in {source} does not match the recipe's {name}: "
                              + "; ".join(detail), hint=hint)
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"network {name} in {source}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the recipe's network",
                hint="a width, channel count or nz differs between the checkpoint's recipe and this one")
    net.load_state_dict(state)


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# What torch's zip writer (PytorchStreamWriter, inline_container.cc) raises when a write fails: on a
# full disk it reports "unexpected pos" instead of the OSError underneath.
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "unexpected pos", "file write failed")


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed file write: an OSError, or torch's zip writer failing (disk full)."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc) for word in _TORCH_WRITE_FAILURES)


def write_failure_reason(exc: BaseException, folder: Path) -> tuple[str, str]:
    """``(what went wrong, what to do)`` for a failed write into ``folder``, by its errno.

    torch's zip writer hides the errno ("unexpected pos"); a folder with less than 1 MiB free then
    counts as full.
    """
    code = getattr(exc, "errno", None)
    detail = getattr(exc, "strerror", None) or _first_line(exc)
    if not isinstance(exc, OSError):
        try:
            full = shutil.disk_usage(folder).free < 1024 * 1024
        except OSError:
            full = False
        if full:
            code, detail = errno.ENOSPC, f"No space left on device (torch's writer: {detail})"
        else:
            detail = f"torch's writer failed ({detail})"
    if code in _NO_SPACE:
        return detail, "free some disk space"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return detail, "fix the folder's permissions (or mount it read-write)"
    if code == errno.ENOENT:
        return (f"{detail}: a file vanished while writing (is another process using this run folder?)",
                "make sure only one `ganzoo train` uses the run folder")
    return detail, "check the disk's free space and the folder"


#: What a light checkpoint keeps: enough for ``ganzoo.load``, ``sample``, ``eval`` and ``export``.
LIGHT_KEYS = ("format", "version", "step", "total_steps", "recipe", "networks", "ema", "device", "milestone",
              "imported_from")
#: How many of the newest checkpoints stay whole (resumable): the newest, and the one before it for
#: when the newest turns out damaged.
WHOLE_KEPT = 2


def light_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint without what only a resume reads (optimizer moments, schedulers, RNG states,
    image pools): the networks, their weight average, the recipe and the step. Marked
    ``resumable: False`` and ``light: True``."""
    return {**{k: payload[k] for k in LIGHT_KEYS if k in payload}, "resumable": False, "light": True}


class CheckpointDir:
    """The ``checkpoints/`` folder of a run: ``step_N.pt`` files, ``latest.pt``, and retention.

    The newest :data:`WHOLE_KEPT` step files are whole (``latest.pt`` is the newest); older ones that
    are kept (``keep_last``, milestones) are rewritten light (:func:`light_payload`): for a model with
    Adam, about a third of the size.
    """

    def __init__(self, root: str | os.PathLike[str], keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = keep_last
        self._light: set[int] = set()  # steps known to be light already (each file is read once)

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
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not is_write_failure(exc):
                raise
            previous = [p.name for s, p in self.step_files() if s != step and p.exists()]
            kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
            reason, hint = write_failure_reason(exc, self.root)
            raise CheckpointError(
                f"could not write checkpoint {target}: {reason}; {kept}",
                hint=f"{hint}, then resume with `ganzoo train --resume {self.root.parent}`",
            ) from None
        self.prune()
        self.lighten()
        return path

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    def save_best(self, payload: dict[str, Any], info: dict[str, Any]) -> Path:
        """Write ``best.pt`` atomically (``log.keep_best``): the weights (light, like an older step file:
        enough to sample, evaluate and export) and ``best`` = ``info`` (metric, mode, value, step).

        A failed write raises a CheckpointError and leaves the previous ``best.pt`` as it was.
        """
        payload = light_payload({"format": FORMAT, "version": VERSION, **payload})
        payload["best"] = dict(info)
        try:
            return atomic_save(payload, self.best)
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not is_write_failure(exc):
                raise
            reason, hint = write_failure_reason(exc, self.root)
            kept = "the previous best.pt is intact" if self.best.exists() else "no best.pt had been written yet"
            raise CheckpointError(f"could not write {self.best}: {reason}; {kept}",
                                  hint=f"{hint}, then resume with `ganzoo train --resume {self.root.parent}`") from None

    def lighten(self) -> list[Path]:
        """Rewrite the step files older than the newest :data:`WHOLE_KEPT` without their resume-only state.

        Each rewrite is atomic, so a kill leaves the file whole or light, never torn. A file that cannot
        be read is left as it is (loading reports it). Returns the files rewritten.
        """
        files = self.step_files()
        rewritten = []
        for step, path in files[: max(0, len(files) - WHOLE_KEPT)]:
            if step in self._light:
                continue
            try:
                payload = load_checkpoint(path)
            except CheckpointError:
                continue
            if payload.get("light") or "optimizers" not in payload:
                self._light.add(step)
                continue
            try:
                atomic_save(light_payload(payload), path)
            except (OSError, RuntimeError) as exc:
                if isinstance(exc, RuntimeError) and not is_write_failure(exc):
                    raise
                continue  # a full disk keeps the whole file; the next checkpoint tries again
            self._light.add(step)
            rewritten.append(path)
        return rewritten

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

    def load_latest(self, warn: Callable[[str], None] | None = None,
                    check: Callable[[dict[str, Any], Path], None] | None = check_resumable_payload
                    ) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint that loads; damaged or incomplete ones are skipped with a warning.

        Step files are tried newest first and ``latest.pt`` last: a kill between writing
        ``step_N.pt`` and relinking ``latest.pt`` leaves ``latest.pt`` one checkpoint behind.
        A file is skipped when it is corrupt (empty, text, torn, failed checksum) or lacks what
        ``check`` needs (default: what ``--resume`` reads: recipe, networks, step, RNG states).
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
                payload = load_checkpoint(path)
                if check is not None:
                    check(payload, path)
                return payload, path
            except CheckpointError as exc:
                if exc.message.startswith("refused"):
                    raise CheckpointError(exc.message, hint="someone put this file in the run folder: inspect "
                                          "it, and delete it to resume from the checkpoint before it") from None
                errors.append(exc.message)
                warn(f"skipping unusable checkpoint: {exc.message}")
        if errors:
            raise CheckpointError(f"no usable checkpoint in {self.root}: " + "; ".join(errors))
        raise CheckpointError(f"no checkpoint in {self.root}",
                              hint="a run writes its first checkpoint after log.checkpoint_every steps or on Ctrl-C")
