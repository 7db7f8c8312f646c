"""One training process per run folder: an exclusive lock on ``RUN/.ganzoo-train.lock``.

Two ``ganzoo train --out SAME`` (or two ``--resume RUN``) would write, link and prune the same
checkpoints at once; the second one would fail with a misleading message, or both would silently
overwrite each other. The lock is an advisory ``flock`` held for the life of the process: the
kernel drops it when the process ends in any way (SIGKILL included), so a crash never leaves a
stale lock behind, and the file itself (which records the holder's pid, host and start time for the
message) may stay in the folder.

Under ``ganzoo train --nproc N`` the launching process holds the lock and tells its ranks so
(``GANZOO_RUN_LOCK``); under a plain ``torchrun`` launch rank 0 takes it.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ganzoo.errors import RunFolderError

try:  # POSIX; elsewhere the lock is a no-op (documented in docs/reliability.md)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".ganzoo-train.lock"
# Folders this process holds the lock of (see held_here: the Trainer does not lock what the CLI locked).
_HELD: set[str] = set()
#: Set by a process that holds a run folder's lock for the processes it starts (``--nproc``).
INHERITED_ENV = "GANZOO_RUN_LOCK"


class RunLock:
    """An exclusive, process-lifetime lock on a run folder (``with RunLock(folder): ...``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about the process holding it (empty when unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunFolderError` naming the process that holds it (this one
        included: a second lock on a folder is refused even in the process holding the first)."""
        if self._fd is not None or fcntl is None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunFolderError(f"cannot write to the output folder {self.folder}: {exc.strerror or exc}",
                                 hint="choose a writable --out folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                info = self.holder()
                who = f"process {info['pid']} on {info.get('host', '?')}" if "pid" in info else "another process"
                since = f", since {info['started']}" if "started" in info else ""
                raise RunFolderError(
                    f"{self.folder} is in use: {who} is training in it{since}; nothing was changed",
                    hint="wait for it to finish (or stop it), or choose another --out folder; two runs in one "
                         "folder would overwrite each other's checkpoints") from None
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return self  # a file system without locks (some network mounts): go on unlocked
            raise RunFolderError(f"cannot lock the output folder {self.folder}: {exc.strerror or exc}") from None
        self._fd = fd
        _HELD.add(lock_key(self.folder))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
        except OSError:
            pass  # the lock holds even when its note cannot be written (a full disk)
        return self

    def release(self) -> None:
        """Give the lock back (the process ending does the same)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD.discard(lock_key(self.folder))
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def lock_key(folder: str | os.PathLike[str]) -> str:
    """How a run folder is named in :data:`INHERITED_ENV` (its absolute path)."""
    return str(Path(folder).expanduser().resolve())


def held_here(folder: str | os.PathLike[str]) -> bool:
    """Whether this process already holds ``folder``'s lock (``ganzoo train`` took it before the Trainer)."""
    return lock_key(folder) in _HELD


def inherited(folder: str | os.PathLike[str]) -> bool:
    """Whether a parent process (``ganzoo train --nproc``) already holds ``folder``'s lock for this one."""
    return os.environ.get(INHERITED_ENV) == lock_key(folder)


__all__ = ["INHERITED_ENV", "LOCK_FILE", "RunLock", "held_here", "inherited", "lock_key"]
