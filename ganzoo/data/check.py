"""``ganzoo data check ROOT --layout aligned|unaligned``: what a dataset folder holds, before training on it.

For every split folder it reports the image count, the image sizes and channel modes found, the
files that cannot be read, and what does not fit the layout: odd widths that cannot be split into
A|B halves (aligned), a domain without its partner folder or domains of different sizes and
channels (unaligned). It also says what the recipe's preprocessing will do to these images, so a
``crop_size`` larger than the images or a stretched aspect ratio shows up before training does.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from ganzoo.data.images import list_images, open_image, read_image
from ganzoo.data.transforms import Preprocess
from ganzoo.errors import DataError

LAYOUTS = ("aligned", "unaligned")
_UNALIGNED_FOLDER = re.compile(r"^(?P<split>.+)(?P<domain>[AB])$")


@dataclass
class FolderReport:
    """What one folder of images holds."""

    name: str
    count: int = 0
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    odd_width: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common()},
                "modes": dict(self.modes.most_common()), "unreadable": [p for p, _ in self.unreadable],
                "odd_width": self.odd_width}


@dataclass
class DatasetReport:
    """The whole check: folders, problems (errors) and remarks (warnings), and the preprocessing plan."""

    root: Path
    layout: str
    folders: dict[str, FolderReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    preprocessing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "layout": self.layout, "ok": self.ok,
                "folders": {k: v.summary() for k, v in self.folders.items()}, "problems": self.problems,
                "remarks": self.remarks, "preprocessing": self.preprocessing}


_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4, "I;16": 1, "I": 1, "F": 1}


def _scan_folder(folder: Path, name: str, aligned: bool, tick: Callable[[], None] | None) -> FolderReport:
    report = FolderReport(name)
    try:
        paths = list_images(folder)
    except DataError:
        return report
    for path in paths:
        report.count += 1
        try:
            with open_image(path) as opened:  # never blocks on a FIFO; a decompression bomb is a DataError
                report.modes[opened.mode] += 1
            size = read_image(path).size  # the full decode training does: truncated files show here
        except DataError as exc:
            report.unreadable.append((str(path), exc.message))
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            report.unreadable.append((str(path), f"cannot read image {path}: {exc}"))
        else:
            report.sizes[size] += 1
            if aligned and size[0] % 2:
                report.odd_width.append(str(path))
        if tick is not None:
            tick()
    return report


def _split_folders(root: Path, layout: str) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if layout == "unaligned":
        return [p for p in folders if _UNALIGNED_FOLDER.match(p.name)]
    return [p for p in folders if not _UNALIGNED_FOLDER.match(p.name) or p.name in ("train", "val", "test")]


def count_files(root: Path, layout: str) -> int:
    """How many image files a check will read (for a progress bar)."""
    total = 0
    for folder in _split_folders(root, layout):
        try:
            total += len(list_images(folder))  # the same files the check reads (links followed, loops once)
        except DataError:
            pass
    return total


def _describe_preprocessing(report: DatasetReport, preprocess: Preprocess, direction: str) -> None:
    sizes: Counter[tuple[int, int]] = Counter()
    for folder in report.folders.values():
        for (w, h), n in folder.sizes.items():
            sizes[(w // 2, h) if report.layout == "aligned" else (w, h)] += n
    if not sizes:
        return
    what = "each A and B half" if report.layout == "aligned" else "each image"
    (w, h), _ = sizes.most_common(1)[0]
    resized = preprocess.resized_size(w, h)
    final = preprocess.output_size(w, h)
    steps = [f"preprocess {preprocess.mode!r}, direction {direction}: {what} ({w}x{h}, the most common size)"]
    if resized != (w, h):
        steps.append(f"is resized to {resized[0]}x{resized[1]} (bicubic)")
    if "crop" in preprocess.mode:
        steps.append(f"then a random {preprocess.crop_size}x{preprocess.crop_size} crop is taken")
    steps.append("then flipped left-right with probability 1/2 (training only)" if preprocess.flip
                 else "with no flips")
    report.preprocessing.append(", ".join(steps) + f"; the networks see {final[0]}x{final[1]}.")
    if "crop" in preprocess.mode:
        too_small = [(sw, sh) for (sw, sh) in sizes
                     if min(preprocess.resized_size(sw, sh)) < preprocess.crop_size]
        if too_small:
            report.problems.append(
                f"crop_size {preprocess.crop_size} is larger than some images after resizing "
                f"(e.g. {too_small[0][0]}x{too_small[0][1]}); lower data.crop_size or raise data.load_size")
    if preprocess.mode == "resize_and_crop" and w != h:
        report.remarks.append(f"images are {w}x{h} but resize_and_crop makes them square "
                              f"({preprocess.load_size}x{preprocess.load_size}): the aspect ratio is stretched; "
                              "scale_width_and_crop keeps it")


def check_dataset(root: str | Path, layout: str = "aligned", *, preprocess: Preprocess | None = None,
                  direction: str = "AtoB", tick: Callable[[], None] | None = None) -> DatasetReport:
    """Inspect the dataset at ``root`` in the given layout.

    Args:
        root: the dataset folder (``data.root`` of a recipe).
        layout: ``aligned`` (``<split>/`` of A|B images) or ``unaligned`` (``<split>A/`` and ``<split>B/``).
        preprocess: the preprocessing a recipe applies (default: the official ``resize_and_crop``
            286 -> 256 with flips).
        tick: called after every image (progress display).

    Raises:
        DataError: ``root`` is missing or has no folder of the layout at all.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist" if not root.exists() else f"{root} is a file")
    report = DatasetReport(root, layout)
    folders = _split_folders(root, layout)
    if not folders:
        expected = "train/, val/ ..." if layout == "aligned" else "trainA/, trainB/ ..."
        other = "unaligned" if layout == "aligned" else "aligned"
        raise DataError(f"{root} has no {layout} split folders ({expected})",
                        hint=f"is it the {other} layout? try --layout {other}")
    for folder in folders:
        report.folders[folder.name] = _scan_folder(folder, folder.name, layout == "aligned", tick)
    for name, folder in report.folders.items():
        if folder.count == 0:
            report.problems.append(f"{name}/ holds no images")
        for path, message in folder.unreadable:
            report.problems.append(message)
        if folder.odd_width:
            report.problems.append(f"{name}/: {len(folder.odd_width)} image(s) have an odd width and cannot be "
                                   f"split into A|B halves, e.g. {folder.odd_width[0]}")
        if layout == "aligned":
            non_pairs = sum(n for (w, h), n in folder.sizes.items() if w != 2 * h)
            if non_pairs:
                report.remarks.append(f"{name}/: {non_pairs} image(s) are not twice as wide as high, so their "
                                      "A and B halves are not square (fine if intended)")
        modes = set(folder.modes)
        if len(modes) > 1:
            report.remarks.append(f"{name}/ mixes image modes {', '.join(sorted(modes))}; every image is "
                                  "converted to the recipe's input_nc/output_nc channels when loaded")
    if layout == "unaligned":
        _check_domains(report)
    _describe_preprocessing(report, preprocess or Preprocess(), direction)
    return report


def _check_domains(report: DatasetReport) -> None:
    splits: dict[str, dict[str, FolderReport]] = {}
    for name, folder in report.folders.items():
        match = _UNALIGNED_FOLDER.match(name)
        assert match is not None
        splits.setdefault(match["split"], {})[match["domain"]] = folder
    for split, domains in sorted(splits.items()):
        if set(domains) != {"A", "B"}:
            have = next(iter(domains))
            missing = "B" if have == "A" else "A"
            report.problems.append(f"{split}{have}/ has no partner folder {split}{missing}/")
            continue
        a, b = domains["A"], domains["B"]
        if a.count and b.count and a.count != b.count:
            report.remarks.append(f"{split}: {a.count} A images vs {b.count} B images (fine for unpaired data: "
                                  "an epoch is the larger folder, each A meets a random B)")
        channels_a = {_MODE_CHANNELS.get(m, 3) for m in a.modes}
        channels_b = {_MODE_CHANNELS.get(m, 3) for m in b.modes}
        if channels_a and channels_b and channels_a != channels_b:
            report.remarks.append(f"{split}: A images have {sorted(channels_a)} channel(s), B images "
                                  f"{sorted(channels_b)}; set data.input_nc/output_nc to what the networks expect")
        size_a = a.sizes.most_common(1)[0][0] if a.sizes else None
        size_b = b.sizes.most_common(1)[0][0] if b.sizes else None
        if size_a and size_b and size_a != size_b:
            report.remarks.append(f"{split}: A images are mostly {size_a[0]}x{size_a[1]}, B images "
                                  f"{size_b[0]}x{size_b[1]}; both are preprocessed to the same network size")


__all__ = ["DatasetReport", "FolderReport", "LAYOUTS", "check_dataset", "count_files"]
