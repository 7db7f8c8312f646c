"""Finding image files on disk and reading them as 8-bit ``L`` or ``RGB`` PIL images.

Every failure a user can cause (a folder that is not there, an empty folder, a truncated file)
becomes a :class:`~ganzoo.errors.DataError` naming the path and saying what to do about it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ganzoo.errors import DataError, did_you_mean

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

    ``max_items`` keeps the first N of the sorted list, so a smaller run sees a stable subset.
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, f) for f in filenames
                     if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
        raise DataError(f"no images found in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    found.sort()
    return found[:max_items] if max_items is not None else found


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

    Unreadable, truncated or non-image files raise a DataError naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = normalise_mode(opened)
            if image is opened:
                image = opened.copy()
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist (was it deleted after the dataset was listed?)") from None
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
