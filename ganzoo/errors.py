"""Errors a user can cause, each carrying the exit code the CLI returns for it.

A ``GanzooError`` is never a bug in ganzoo: it is a message for a person (a typo in a recipe,
a missing dataset, a checkpoint from another recipe). The CLI prints it on one screen without a
traceback and exits with ``exit_code``.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

#: The longest message or hint a GanzooError keeps. A message quotes user input (a recipe value, a
#: file name, a plugin's exception), and user input can be huge (a YAML alias bomb expands to
#: megabytes): the middle is cut so that an error always fits on one screen.
MAX_MESSAGE_CHARS = 2000


def cap_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` shortened to at most about ``limit`` characters: its start and end, with the cut counted."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    keep = max(16, limit // 2 - 40)
    return f"{text[:keep]} ... [{len(text) - 2 * keep} characters cut] ... {text[-keep:]}"


class GanzooError(Exception):
    """Base class of every user-facing error."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = cap_text(message)
        super().__init__(message)
        self.message = message
        self.hint = cap_text(hint) if hint is not None else None

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ComponentError(GanzooError):
    """An unknown component name, a duplicate registration or a bad component argument."""

    exit_code = 2


class RecipeError(GanzooError):
    """A recipe that cannot be run: unknown key, wrong type, missing value, impossible combination."""

    exit_code = 2

    def __init__(self, key: str, message: str, *, hint: str | None = None, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}", hint=hint)
        self.key = key


class DataError(GanzooError):
    """A dataset that is missing, empty or unreadable."""

    exit_code = 2


class CheckpointError(GanzooError):
    """A checkpoint that is missing, corrupt, unsafe or made by another recipe."""

    exit_code = 2


class RunFolderError(GanzooError):
    """A run folder that cannot be used as asked: it holds another run, another process is training
    in it, or ``--out`` and ``--resume`` disagree (a user mistake, so exit code 2 like the others)."""

    exit_code = 2


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return the candidates that look most like ``word`` (for "did you mean" hints)."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean ...?' hint, or None when nothing is close."""
    matches = close_matches(word, candidates)
    if not matches:
        return None
    return "did you mean " + " or ".join(repr(m) for m in matches) + "?"
