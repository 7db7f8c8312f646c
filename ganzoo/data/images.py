"""Finding image files on disk and reading them as 8-bit ``L`` or ``RGB`` PIL images.

Every failure a user can cause (a folder that is not there, an empty folder, a truncated file)
becomes a :class:`~ganzoo.errors.DataError` naming the path and saying what to do about it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ganzoo.errors import DataError, did_you_mean
from ganzoo.safe_files import NotARegularFile, is_regular_file, open_regular_file

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# Datasets published with the official pix2pix / CycleGAN / BicycleGAN code, which
# `ganzoo data download NAME` fetches; used to point a user at the right command.
OFFICIAL_DATASETS: tuple[str, ...] = (
    "facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day",
    "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
    "ukiyoe2photo", "vangogh2photo", "iphone2dslr_flower", "ae_photos", "grumpifycat",
    "mini", "mini_pix2pix", "mini_colorization",
)

# A truncated file must be an error, never a silently half-grey training image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def how_to_get(root: Path) -> str:
    """A hint telling how to obtain the dataset a missing ``root`` folder was meant to hold."""
    name = root.name
    if name.startswith("shapes"):
        flavour = name if name in ("shapes-multimodal", "shapes-deterministic", "shapes-unpaired") \
            else "shapes-multimodal"
        return f"generate it with `ganzoo data shapes {root} --flavour {flavour}`"
    if name in OFFICIAL_DATASETS:
        return f"download it with `ganzoo data download {name}`"
    return ("point data.root at an existing folder; `ganzoo data shapes OUT` generates the built-in "
            "shapes world, `ganzoo data download NAME` fetches an official dataset")


def require_folder(folder: Path, *, root: Path, what: str) -> Path:
    """Return ``folder`` if it is a directory; otherwise a DataError saying what is missing and how to get it."""
    if root.exists() and not root.is_dir():
        raise DataError(f"dataset folder {root} is a file, not a folder")
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist", hint=how_to_get(root))
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = did_you_mean(folder.name, present)
        raise DataError(
            f"{root} has no {folder.name!r} folder ({what}); it contains: {', '.join(present) or 'no folders'}",
            hint=hint,
        )
    return folder


def list_images(folder: Path, max_items: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden entries skipped), sorted by path.

    Symbolic links to folders are followed, but each real folder is read once: a link back to a
    folder above it (``loop -> .``) neither lists its images again nor walks forever. Entries that
    are not regular files (FIFOs, sockets, devices, broken links) are never listed, so nothing
    ever blocks in ``open()`` on them.

    ``max_items`` keeps the first N of the sorted list, so a smaller run sees a stable subset.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:  # reached again through a link: a loop, or a second way to the same folder
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            if is_regular_file(path):
                found.append(Path(path))
    if not found:
        raise DataError(f"no images found in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    found.sort()
    return found[:max_items] if max_items is not None else found


@contextlib.contextmanager
def open_image(path: Path | str) -> Iterator[Image.Image]:
    """``PIL.Image.open`` on a file checked to be a regular file *after* opening it (no race), so that
    a FIFO or device named ``*.png`` is an error instead of a hang; every failure a user can cause is
    a :class:`DataError` naming the file (decompression bombs included)."""
    path = Path(path)
    try:
        handle = open_regular_file(path)  # a FIFO opens at once and is refused, never read
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist (was it deleted after the dataset was listed?)") from None
    except NotARegularFile as exc:
        raise DataError(f"{path} is {exc.kind}, not an image file",
                        hint="remove it from the dataset folder") from None
    except OSError as exc:
        raise DataError(f"cannot open image {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            image = Image.open(handle)
        except Image.DecompressionBombError as exc:
            raise DataError(f"refused to read image {path}: {exc}",
                            hint="a decompression bomb, or a real image larger than any training needs: "
                                 "resize it") from None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read image {path}: {exc}",
                            hint="the file is truncated or not an image; re-download or delete it") from None
        with image:
            yield image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    # Transparent pixels keep arbitrary colour values; composite on white so they read as background.
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    # PIL's own convert("L") clips 16-bit values at 255; rescale the full range instead.
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scaled = np.clip(values, 0.0, 1.0) * 255.0 if values.max(initial=0.0) <= 1.0 else np.clip(values, 0, 255)
    else:
        top = 65535.0 if values.max(initial=0.0) > 255 or image.mode.startswith("I;16") else 255.0
        scaled = np.clip(values, 0, top) * (255.0 / top)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def normalise_mode(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit ``L`` (grey-looking sources) or ``RGB`` (everything else)."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette is not None and image.palette.mode == "RGBA"
        return _flatten_alpha(image) if has_alpha else image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        flat = _flatten_alpha(image)
        return flat.convert("L") if mode in ("LA", "La") else flat
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_bit_depth_to_l(image)
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV ...


def read_image(path: Path | str) -> Image.Image:
    """Read one image fully into memory as an 8-bit ``L`` or ``RGB`` PIL image.

    Unreadable, truncated or non-image files, non-regular files (FIFOs, devices) and decompression
    bombs raise a DataError naming the file.
    """
    path = Path(path)
    with open_image(path) as opened:
        try:
            opened.load()
            image = normalise_mode(opened)
            if image is opened:
                image = opened.copy()
        except Image.DecompressionBombError as exc:
            raise DataError(f"refused to read image {path}: {exc}",
                            hint="a decompression bomb, or a real image larger than any training needs: "
                                 "resize it") from None
        except MemoryError:
            raise DataError(f"image {path} ({opened.width}x{opened.height}) does not fit in memory",
                            hint="resize it") from None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read image {path}: {exc}",
                            hint="the file is truncated or not an image; re-download or delete it") from None
    return image


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """Convert an ``L``/``RGB`` image to 1 channel (luma, ``L``) or 3 channels (``RGB``)."""
    if channels == 1:
        return image if image.mode == "L" else image.convert("L")
    if channels == 3:
        return image if image.mode == "RGB" else image.convert("RGB")
    raise DataError(f"images can be loaded with 1 (grayscale) or 3 (RGB) channels, not {channels}")
