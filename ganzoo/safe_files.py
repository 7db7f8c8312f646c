"""Opening a file a user named without ever blocking on it: FIFOs, sockets and devices are refused.

``open()`` on a FIFO blocks until a writer appears, so a FIFO named ``recipe.yaml`` or ``x.png``
used to hang ``ganzoo train``/``data check`` for ever. :func:`open_regular_file` opens with
``O_NONBLOCK`` (a FIFO opens at once, unread), checks ``fstat`` on the open descriptor (no race
between the check and the open), and only then hands back an ordinary blocking file object.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotARegularFile(OSError):
    """The path names a FIFO, socket, device or folder, not a file to read (``kind`` says which)."""

    kind: str = "not a regular file"


def kind_of(mode: int) -> str:
    """What a ``st_mode`` is, in words (``a FIFO (named pipe)``, ``a character device`` ...)."""
    for test, word in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return word
    return "not a regular file"


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")`` for regular files only; :class:`NotARegularFile` (an OSError) otherwise.

    Other failures are the usual OSErrors (FileNotFoundError, PermissionError ...).
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            error = NotARegularFile(errno.EINVAL, f"{path} is {kind_of(mode)}, not a file to read", str(path))
            error.kind = kind_of(mode)
            raise error
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (links followed) is a regular file, not a FIFO, socket, device or broken link."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


__all__ = ["NotARegularFile", "is_regular_file", "kind_of", "open_regular_file"]
