"""The shapes world: a tiny synthetic dataset whose ground truth is known exactly.

Each image shows 1-3 non-overlapping shapes (circle, square, triangle) on white. Flavours:

- ``shapes-multimodal`` (aligned ``ROOT/{train,val,test}/NNNNN.png``, A|B side by side): A is the
  black outline drawing, B the same shapes each filled with a colour drawn uniformly from
  :data:`PALETTE` (8 colours). Many B are right for one A: a test of mode coverage (BicycleGAN).
- ``shapes-deterministic`` (aligned): the fill colour follows the shape type
  (:data:`COLOUR_BY_TYPE`), so each A has one right answer (pix2pix).
- ``shapes-unpaired`` (unaligned ``ROOT/{train,val,test}{A,B}/``): domain A shapes are filled from
  :data:`WARM_PALETTE`, domain B shapes from :data:`COOL_PALETTE`, with independent geometry (CycleGAN).

Every split folder holds a ``meta.jsonl`` with one record per image (see :func:`load_meta`), and
``ROOT/shapes.json`` records how the folder was made so :func:`ensure_shapes` can check it. The
output depends only on the arguments: same seed, byte-identical files.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ganzoo.errors import DataError, did_you_mean

RGB = tuple[int, int, int]

#: Bumped whenever the drawing changes, so an old folder no longer matches a new spec.
GENERATOR_VERSION = 1

FLAVOURS: dict[str, str] = {
    "shapes-multimodal": "aligned",
    "shapes-deterministic": "aligned",
    "shapes-unpaired": "unaligned",
}
SHAPE_TYPES: tuple[str, ...] = ("circle", "square", "triangle")

#: 8 fill colours at least 145 apart (RGB distance) from each other, from white and from black.
PALETTE_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan", "purple", "mint")
PALETTE: tuple[RGB, ...] = (
    (230, 30, 30), (30, 180, 30), (30, 60, 230), (235, 215, 30),
    (220, 40, 220), (30, 205, 225), (110, 10, 120), (130, 250, 130),
)
#: Domain A of ``shapes-unpaired``: red exceeds blue in every colour.
WARM_PALETTE_NAMES: tuple[str, ...] = ("red", "orange", "yellow", "pink")
WARM_PALETTE: tuple[RGB, ...] = ((230, 30, 30), (245, 130, 20), (235, 215, 30), (240, 100, 170))
#: Domain B of ``shapes-unpaired``: blue exceeds red in every colour.
COOL_PALETTE_NAMES: tuple[str, ...] = ("blue", "cyan", "teal", "violet")
COOL_PALETTE: tuple[RGB, ...] = ((30, 60, 230), (30, 205, 225), (30, 170, 110), (120, 60, 220))
PALETTES: dict[str, tuple[RGB, ...]] = {"palette": PALETTE, "warm": WARM_PALETTE, "cool": COOL_PALETTE}
PALETTE_NAMES_BY_PALETTE: dict[str, tuple[str, ...]] = {
    "palette": PALETTE_NAMES, "warm": WARM_PALETTE_NAMES, "cool": COOL_PALETTE_NAMES,
}
#: ``shapes-deterministic``: index into :data:`PALETTE` for each shape type (red, green, blue).
COLOUR_BY_TYPE: dict[str, int] = {"circle": 0, "square": 1, "triangle": 2}

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
SPEC_KEYS: tuple[str, ...] = ("flavour", "size", "seed", "n_train", "n_val", "n_test")
MIN_SIZE = 16
META_FILE = "meta.jsonl"
INFO_FILE = "shapes.json"


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its bounding box is ``[x - size, x + size]`` by ``[y - size, y + size]`` (inclusive).

    A triangle points up: apex ``(x, y - size)``, base corners ``(x -/+ size, y + size)``.
    ``colour_index`` indexes the palette named ``palette`` (see :data:`PALETTES`).
    """

    type: str
    x: int
    y: int
    size: int
    colour_index: int
    colour: RGB
    palette: str

    def record(self) -> dict[str, Any]:
        """The JSON form stored in meta.jsonl."""
        data = asdict(self)
        data["colour"] = list(self.colour)
        return data


def outline_width(image_size: int) -> int:
    """Width in pixels of the black outlines of A images (2 at 64 px)."""
    return max(1, image_size // 32)


def size_range(image_size: int) -> tuple[int, int]:
    """Smallest and largest shape half-extent for an image side (7-13 px at 64 px, 4-6 px at 32 px)."""
    low = max(4, round(0.11 * image_size))
    return low, max(low + 2, round(0.2 * image_size))


def _boxes_apart(a: tuple[int, int, int], b: tuple[int, int, int], gap: int) -> bool:
    (ax, ay, ar), (bx, by, br) = a, b
    return abs(ax - bx) > ar + br + gap or abs(ay - by) > ar + br + gap


def sample_geometry(rng: random.Random, image_size: int, max_tries: int = 100) -> list[tuple[str, int, int, int]]:
    """1-3 ``(type, x, y, size)`` whose bounding boxes are at least 2 px apart and 1 px inside the image.

    A shape that finds no free place in ``max_tries`` is dropped, so crowded draws have fewer shapes.
    """
    low, high = size_range(image_size)
    wanted = rng.randint(1, 3)
    placed: list[tuple[str, int, int, int]] = []
    for _ in range(wanted):
        for _ in range(max_tries):
            half = rng.randint(low, high)
            x = rng.randint(half + 1, image_size - 2 - half)
            y = rng.randint(half + 1, image_size - 2 - half)
            if all(_boxes_apart((x, y, half), (px, py, ph), gap=2) for _, px, py, ph in placed):
                placed.append((rng.choice(SHAPE_TYPES), x, y, half))
                break
    return placed


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape | dict[str, Any], *, fill: Any, outline: Any = None,
               width: int = 0, offset: float = 0.0, scale: float = 1.0) -> None:
    """Draw one shape (a :class:`Shape` or its meta record) ``offset`` pixels to the right, ``scale`` times bigger."""
    kind, x, y, half = ((shape.type, shape.x, shape.y, shape.size) if isinstance(shape, Shape)
                        else (shape["type"], shape["x"], shape["y"], shape["size"]))
    if outline is None:
        # PIL fills a polygon slightly inside the pixels its outline covers; outlining in the fill
        # colour makes a filled shape cover every pixel its outlined twin inks.
        outline, width = fill, 1
    left, top = (x - half) * scale + offset, (y - half) * scale
    # Scale pixel edges, not centres: a shape covering pixels [x-h, x+h] covers [s(x-h), s(x+h+1)-1] after scaling.
    right, bottom = (x + half + 1) * scale - 1 + offset, (y + half + 1) * scale - 1
    # Fill and outline are separate calls: PIL skips the outline when both have the same colour.
    if kind == "circle":
        draw.ellipse((left, top, right, bottom), fill=fill)
        draw.ellipse((left, top, right, bottom), outline=outline, width=width)
    elif kind == "square":
        draw.rectangle((left, top, right, bottom), fill=fill)
        draw.rectangle((left, top, right, bottom), outline=outline, width=width)
    elif kind == "triangle":
        corners = [((left + right) / 2, top), (right, bottom), (left, bottom)]
        draw.polygon(corners, fill=fill)
        draw.polygon(corners, outline=outline, width=width)
    else:
        raise DataError(f"unknown shape type {kind!r} in shapes meta; expected one of {', '.join(SHAPE_TYPES)}")


def _colour_shapes(rng: random.Random, geometry: list[tuple[str, int, int, int]], palette: str,
                   by_type: bool) -> list[Shape]:
    colours = PALETTES[palette]
    shapes = []
    for kind, x, y, half in geometry:
        index = COLOUR_BY_TYPE[kind] if by_type else rng.randrange(len(colours))
        shapes.append(Shape(kind, x, y, half, index, colours[index], palette))
    return shapes


def render_pair(rng: random.Random, image_size: int, by_type: bool) -> tuple[Image.Image, list[Shape]]:
    """One aligned A|B image: outlines on the left, the same shapes filled from :data:`PALETTE` on the right."""
    # Geometry first, colours after: both aligned flavours then share the layouts of a seed.
    shapes = _colour_shapes(rng, sample_geometry(rng, image_size), "palette", by_type)
    image = Image.new("RGB", (2 * image_size, image_size), WHITE)
    draw = ImageDraw.Draw(image)
    width = outline_width(image_size)
    for shape in shapes:
        draw_shape(draw, shape, fill=WHITE, outline=BLACK, width=width)
        draw_shape(draw, shape, fill=shape.colour, offset=image_size)
    return image, shapes


def render_filled(rng: random.Random, image_size: int, palette: str) -> tuple[Image.Image, list[Shape]]:
    """One unpaired-domain image: shapes filled from ``palette`` (``"warm"`` or ``"cool"``) on white."""
    shapes = _colour_shapes(rng, sample_geometry(rng, image_size), palette, by_type=False)
    image = Image.new("RGB", (image_size, image_size), WHITE)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        draw_shape(draw, shape, fill=shape.colour)
    return image, shapes


def _folders(flavour: str, n_train: int, n_val: int, n_test: int) -> list[tuple[str, int]]:
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if FLAVOURS[flavour] == "aligned":
        return [(split, n) for split, n in counts.items() if n > 0]
    return [(f"{split}{domain}", n) for split, n in counts.items() if n > 0 for domain in ("A", "B")]


def _image_rng(seed: int, folder: str, index: int) -> random.Random:
    # A string seed is hashed with SHA-512: stable across processes and Python versions, and each
    # image has its own stream, so val/test do not change when n_train does.
    return random.Random(f"ganzoo-shapes/{seed}/{folder}/{index}")


def _write_folder(folder: Path, name: str, flavour: str, count: int, image_size: int, seed: int) -> None:
    folder.mkdir(parents=True)
    lines = []
    for index in range(count):
        rng = _image_rng(seed, name, index)
        if FLAVOURS[flavour] == "aligned":
            image, shapes = render_pair(rng, image_size, by_type=flavour == "shapes-deterministic")
        else:
            image, shapes = render_filled(rng, image_size, "warm" if name.endswith("A") else "cool")
        filename = f"{index:05d}.png"
        image.save(folder / filename, format="PNG", compress_level=1)
        lines.append(json.dumps({"file": filename, "image_size": image_size,
                                 "shapes": [s.record() for s in shapes]}, separators=(",", ":")))
    (folder / META_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _check_spec(flavour: str, size: int, n_train: int, n_val: int, n_test: int, seed: int) -> None:
    if flavour not in FLAVOURS:
        raise DataError(f"unknown shapes flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}",
                        hint=did_you_mean(str(flavour), FLAVOURS))
    for key, value, low in (("size", size, MIN_SIZE), ("n_train", n_train, 1), ("n_val", n_val, 0),
                            ("n_test", n_test, 0), ("seed", seed, None)):
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            expected = "an integer" if low is None else f"an integer >= {low}"
            raise DataError(f"shapes {key}: expected {expected}, got {value!r}")


def describe(flavour: str, size: int, n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, Any]:
    """The content of ``shapes.json`` for a spec: the spec itself plus layout, folders and palettes."""
    palettes = ("palette",) if FLAVOURS[flavour] == "aligned" else ("warm", "cool")
    info: dict[str, Any] = {
        "format": "ganzoo-shapes", "version": GENERATOR_VERSION, "flavour": flavour, "layout": FLAVOURS[flavour],
        "size": size, "seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test,
        "folders": dict(_folders(flavour, n_train, n_val, n_test)), "shape_types": list(SHAPE_TYPES),
        "palettes": {name: {"names": list(PALETTE_NAMES_BY_PALETTE[name]), "rgb": [list(c) for c in PALETTES[name]]}
                     for name in palettes},
    }
    if flavour == "shapes-deterministic":
        info["colour_by_type"] = dict(COLOUR_BY_TYPE)
    return info


def generate_shapes(root: str | Path, flavour: str = "shapes-multimodal", size: int = 64, n_train: int = 2000,
                    n_val: int = 100, n_test: int = 100, seed: int = 0, *, overwrite: bool = False) -> Path:
    """Write a shapes-world dataset to ``root`` and return its path.

    Everything is written to a hidden temporary folder beside ``root`` and renamed into place at
    the end, so an interrupted run never leaves a folder that looks complete. An existing
    non-empty ``root`` is an error unless ``overwrite=True`` (see :func:`ensure_shapes` to reuse it).
    """
    _check_spec(flavour, size, n_train, n_val, n_test, seed)
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"cannot write the shapes dataset to {root}: it is a file")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise DataError(f"{root} already exists and is not empty",
                        hint="delete it, choose another folder, or pass overwrite=True (--overwrite)")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    except OSError as exc:
        raise _cannot_write(root, exc) from None
    try:
        for name, count in _folders(flavour, n_train, n_val, n_test):
            _write_folder(staging / name, name, flavour, count, size, seed)
        info = describe(flavour, size, n_train, n_val, n_test, seed)
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset should be as readable as any folder
        if root.is_dir():
            # Without overwrite the folder was empty when we checked; rmdir refuses if that changed.
            shutil.rmtree(root) if overwrite else root.rmdir()
        os.replace(staging, root)
    except OSError as exc:  # a read-only file system, a full disk, a folder without permission
        shutil.rmtree(staging, ignore_errors=True)
        raise _cannot_write(root, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _cannot_write(root: Path, exc: OSError) -> DataError:
    """The one-line error for a shapes world that cannot be written (nothing partial is left behind)."""
    return DataError(f"cannot write the shapes dataset to {root}: {exc.strerror or exc}"
                     + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(root) else ""),
                     hint="point data.root (or `ganzoo data shapes OUT`) at a writable folder with free space; "
                          "nothing was left half-written")


def read_info(root: str | Path) -> dict[str, Any]:
    """The ``shapes.json`` of a generated folder (a DataError when there is none or it is unreadable)."""
    path = Path(root).expanduser() / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path.parent} is not a shapes dataset: it has no {INFO_FILE}",
                        hint=f"generate one with `ganzoo data shapes {path.parent}`") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def ensure_shapes(root: str | Path, **spec: Any) -> Path:
    """Generate the shapes dataset ``spec`` (arguments of :func:`generate_shapes`) unless ``root`` already holds it.

    A folder made with a different spec, or a non-empty folder that is no shapes dataset, is a
    DataError: it is never silently reused or replaced.
    """
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise DataError(f"ensure_shapes: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(SPEC_KEYS)}")
    wanted = {"flavour": "shapes-multimodal", "size": 64, "n_train": 2000, "n_val": 100, "n_test": 100, "seed": 0}
    wanted.update(spec)
    _check_spec(**wanted)
    root = Path(root).expanduser()
    if not root.is_dir() or not any(root.iterdir()):
        return generate_shapes(root, **wanted)
    if not (root / INFO_FILE).is_file():
        raise DataError(f"{root} exists but is not a generated shapes dataset (no {INFO_FILE})",
                        hint="delete it or choose another data.root")
    info = read_info(root)
    found = {key: info.get(key) for key in SPEC_KEYS}
    differences = [f"{key}={found[key]!r} (wanted {wanted[key]!r})" for key in SPEC_KEYS if found[key] != wanted[key]]
    if info.get("version") != GENERATOR_VERSION:
        differences.append(f"version={info.get('version')!r} (this ganzoo draws version {GENERATOR_VERSION})")
    if differences:
        raise DataError(f"{root} holds a different shapes dataset: {', '.join(differences)}",
                        hint="delete the folder to regenerate it, or point data.root elsewhere")
    return root


def load_meta(root: str | Path, split: str) -> list[dict[str, Any]]:
    """The per-image records of one split folder (``train``, ``val``, ``testA`` ...), in file order.

    Each record is ``{"file": "00000.png", "image_size": 64, "shapes": [{"type", "x", "y", "size",
    "colour_index", "colour": [r, g, b], "palette"}, ...]}``; see :class:`Shape` for the geometry.
    """
    path = Path(root).expanduser() / split / META_FILE
    if not path.is_file():
        folders = sorted(p.name for p in path.parent.parent.glob("*") if (p / META_FILE).is_file())
        raise DataError(f"no shapes metadata at {path}",
                        hint=did_you_mean(split, folders) or (f"splits with metadata: {', '.join(folders)}"
                                                              if folders else "is this a shapes dataset?"))
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except ValueError as exc:
        raise DataError(f"{path} is corrupt: {exc}") from None


def shape_mask(shape: dict[str, Any] | Shape, image_size: int, *, scale: float = 1.0, erode: int = 0) -> np.ndarray:
    """Boolean ``(H, W)`` mask of a shape's pixels in an image ``image_size * scale`` wide, eroded by ``erode`` px.

    When eroding would leave nothing, the largest erosion that leaves some pixels is used.
    """
    side = max(1, round(image_size * scale))
    canvas = Image.new("L", (side, side), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, fill=255, scale=scale)
    for radius in range(max(0, erode), -1, -1):
        eroded = canvas.filter(ImageFilter.MinFilter(2 * radius + 1)) if radius else canvas
        mask = np.asarray(eroded) > 127
        if mask.any():
            return mask
    return np.asarray(canvas) > 127


def _as_hwc_0_255(image: Any, value_range: tuple[float, float]) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image, dtype=np.float64)
    if hasattr(image, "detach"):  # a torch tensor: (C, H, W)
        tensor = image.detach().cpu()
        if tensor.dim() != 3:
            raise DataError(f"expected one image tensor (C, H, W), got shape {tuple(tensor.shape)}")
        array = tensor.permute(1, 2, 0).numpy()
    else:  # a numpy array: (H, W) or (H, W, C)
        array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DataError(f"expected an image array (H, W, C), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        low, high = value_range
        return (array.astype(np.float64) - low) * (255.0 / (high - low))
    return array.astype(np.float64)


def interior_colours(image: Any, record: dict[str, Any], *, erode: int | None = None,
                     value_range: tuple[float, float] = (-1.0, 1.0)) -> list[tuple[float, ...]]:
    """Mean colour (0-255 per channel) inside each shape of ``record``, away from its edges.

    ``image`` is one half of a shapes image (the B side to check colours): a PIL image, a
    ``(H, W[, C])`` numpy array or a ``(C, H, W)`` tensor. Integer arrays are 0-255; float ones span
    ``value_range`` ([-1, 1] as networks output). An image of another resolution than the record's
    ``image_size`` is handled by scaling the shapes. ``erode`` (pixels at the record's resolution,
    default outline width + 1) keeps blurry or outlined edges out of the mean.
    """
    pixels = _as_hwc_0_255(image, value_range)
    image_size = int(record["image_size"])
    scale = pixels.shape[0] / image_size
    radius = outline_width(image_size) + 1 if erode is None else erode
    colours = []
    for shape in record["shapes"]:
        mask = shape_mask(shape, image_size, scale=scale, erode=round(radius * scale))
        mask = mask[: pixels.shape[0], : pixels.shape[1]]
        colours.append(tuple(float(v) for v in pixels[: mask.shape[0], : mask.shape[1]][mask].mean(axis=0)))
    return colours


def nearest_palette_index(colour: Sequence[float], palette: Sequence[RGB] = PALETTE) -> int:
    """Index of the palette colour closest (RGB distance) to ``colour``."""
    distances = [sum((float(a) - b) ** 2 for a, b in zip(colour, entry)) for entry in palette]
    return int(np.argmin(distances))


def iter_records(root: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``(folder, record)`` of a generated dataset, folder by folder."""
    for folder in read_info(root)["folders"]:
        for record in load_meta(root, folder):
            yield folder, record
