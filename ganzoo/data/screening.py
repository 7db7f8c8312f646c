"""Skip-and-report for unreadable images (``data.bad_images: skip``).

By default a bad image stops training with an error naming the file. A recipe can instead ask to
screen the dataset once before training: every image is decoded, the ones that cannot be read are
removed from the dataset's file lists, and the run reports them (console and a file in the run
folder) instead of silently training on less.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ganzoo.data.images import read_image
from ganzoo.errors import DataError

# The per-layout file lists of the built-in datasets (aligned/single: paths; unaligned: A and B).
FILE_LISTS = ("paths", "paths_A", "paths_B")


def drop_unreadable_images(dataset: Any) -> list[tuple[str, str]]:
    """Remove the images that cannot be decoded from ``dataset``; return ``(path, reason)`` for each."""
    dropped: list[tuple[str, str]] = []
    lists = [name for name in FILE_LISTS if hasattr(dataset, name)]
    if not lists:
        raise DataError(f"{type(dataset).__name__} has no file list ganzoo can screen "
                        f"(one of {', '.join(FILE_LISTS)}); data.bad_images=skip needs one",
                        hint="set data.bad_images=error")
    for name in lists:
        kept: list[Path] = []
        for path in getattr(dataset, name):
            try:
                read_image(path)
            except DataError as error:
                dropped.append((str(path), error.message))
            else:
                kept.append(path)
        if not kept:
            raise DataError(f"every image in {name} of the dataset is unreadable ({len(dropped)} skipped), "
                            f"e.g. {dropped[0][0]}")
        setattr(dataset, name, kept)
    return dropped
