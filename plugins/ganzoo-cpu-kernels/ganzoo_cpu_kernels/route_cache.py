"""Convolution routes kept on disk per machine, so that runs on one machine compute alike.

Each route rounds differently, and which one is fastest is timed: two runs that each time their
layers may choose differently and so end with different weights. A run that reads its choices from
this file times nothing and takes exactly the routes of every other run that read them.

The file is JSON: ``{"format": ..., "version": 1, "machines": {machine: {signature: route}}}``.
Routes are kept per :func:`machine_signature` (CPU model, torch version, thread count): a choice
timed on one CPU or build of PyTorch says nothing about another, and a home folder may be shared
between machines. Entries are only ever added: a choice already in the file is never replaced, so
every run that read it computed the same way. Each write replaces the file atomically (a temporary
file renamed over it), under an advisory lock where the OS offers one, so runs writing at once lose
at most a choice, which a later run times again.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

FORMAT = "ganzoo-cpu-kernels routes"
VERSION = 1


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says about the processor."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Model", "cpu model"):
                    return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_signature() -> str:
    """What a route choice is valid for: the CPU model, torch's version and its intra-op thread count."""
    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


class RouteCache:
    """The routes file at ``path`` (``~`` expanded); see the module's docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RouteCache({str(self.path)!r})"

    def load(self, machine: str | None = None) -> dict[str, str]:
        """The choices kept for ``machine`` (default: this one); empty where there are none yet.

        An unreadable or foreign file counts as empty, with a warning: it is replaced at the next
        write rather than stopping a training run."""
        return dict(self._read().get(machine or machine_signature(), {}))

    def add(self, routes: Mapping[str, str], machine: str | None = None) -> None:
        """Add ``routes`` for ``machine`` (default: this one), keeping any choice already in the file.

        A file that cannot be written is a warning, not an error: the run goes on, only not repeatably."""
        machine = machine or machine_signature()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                machines = self._read()
                kept = machines.setdefault(machine, {})
                for signature, route in routes.items():
                    kept.setdefault(str(signature), str(route))
                self._write({"format": FORMAT, "version": VERSION, "machines": machines})
        except OSError as exc:
            warnings.warn(f"cpu_kernels: cannot write the route cache {self.path}: {exc}", RuntimeWarning,
                          stacklevel=2)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            warnings.warn(f"cpu_kernels: cannot read the route cache {self.path}: {exc}", RuntimeWarning,
                          stacklevel=3)
            return {}
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError(f"not a version-{VERSION} route cache")
            return {str(machine): {str(s): str(r) for s, r in routes.items()}
                    for machine, routes in data["machines"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            warnings.warn(f"cpu_kernels: ignoring the route cache {self.path} ({exc}); it is rewritten at the "
                          "next timed choice", RuntimeWarning, stacklevel=3)
            return {}

    def _write(self, data: dict) -> None:
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an advisory lock on a sibling ``.lock`` file while reading and rewriting (POSIX only)."""
        try:
            import fcntl
        except ImportError:  # Windows: the rename is still atomic; concurrent writers may lose a choice
            yield
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
