"""Preprocessing: how a PIL image becomes a network tensor, and the seeded randomness behind it.

The preprocess modes are the official ones (``--preprocess`` of pytorch-CycleGAN-and-pix2pix):

- ``resize_and_crop``: resize to ``load_size`` x ``load_size``, random ``crop_size`` crop;
- ``crop``: random ``crop_size`` crop of the image as it is;
- ``scale_width``: width becomes ``load_size``, height keeps the aspect ratio (at least ``crop_size``);
- ``scale_width_and_crop``: ``scale_width``, then a random ``crop_size`` crop;
- ``none``: only round height and width to multiples of 4 (the networks downsample by 2s).

A horizontal flip with probability 1/2 follows unless ``flip=False``. The crop offset and the flip
are drawn from a ``torch.Generator`` seeded by ``(seed, epoch, index)`` (:func:`item_generator`),
never from global random state, so an item is the same whichever DataLoader worker loads it and a
resumed run sees exactly the data the interrupted one would have seen.

``data.augment`` (:class:`Augment`) adds a random resized crop, a rotation and colour jitter after
that, with parameters drawn from the same generator after the crop and flip (so a recipe without it
draws exactly what it drew before). An aligned pair gets one draw: the same geometry on A and B.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch.utils.data import Dataset

from ganzoo.data.images import to_channels
from ganzoo.errors import DataError, did_you_mean

PREPROCESS_MODES: tuple[str, ...] = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DIRECTIONS: tuple[str, ...] = ("AtoB", "BtoA")

# The networks downsample by powers of two; "none" still rounds sizes to this multiple, as the official code does.
SIZE_MULTIPLE_FOR_NONE = 4


def _tv_functional() -> Any:
    # torchvision costs about a second to import; pay it only when images are actually transformed.
    import torchvision.transforms.v2.functional as tv_functional

    return tv_functional


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch.Generator whose state depends only on ``(seed, epoch, index)``.

    The three numbers are hashed rather than added, so neighbouring items and epochs get
    unrelated streams.
    """
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return generator


def random_int(generator: torch.Generator, high: int) -> int:
    """A uniform integer in ``[0, high]`` (inclusive) drawn from ``generator``."""
    return int(torch.randint(0, high + 1, (1,), generator=generator))


@dataclass(frozen=True)
class Augmentation:
    """The random choices for one item: the crop's top-left corner (in the resized image) and the flip."""

    crop_x: int
    crop_y: int
    flip: bool


@dataclass(frozen=True)
class Preprocess:
    """One preprocess mode with its sizes; samples an :class:`Augmentation` and applies it to PIL images."""

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise DataError(f"data.preprocess: unknown mode {self.mode!r}; choose one of {', '.join(PREPROCESS_MODES)}",
                            hint=did_you_mean(str(self.mode), PREPROCESS_MODES))
        for key in ("load_size", "crop_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"data.{key}: expected a positive integer, got {value!r}")
        if self.mode in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            raise DataError(
                f"data.load_size ({self.load_size}) is smaller than data.crop_size ({self.crop_size}); "
                f"preprocess {self.mode!r} resizes to load_size and then crops crop_size from it",
                hint=f"set data.load_size >= {self.crop_size}, or lower data.crop_size",
            )

    def randomness(self) -> str | None:
        """What makes two loads of one image differ (a random crop or flip), or None when nothing does."""
        if self.flip:
            return "data.flip is true (a random horizontal flip per load)"
        if "crop" in self.mode and not (self.mode == "resize_and_crop" and self.load_size == self.crop_size):
            return f"data.preprocess is {self.mode!r} (a random crop per load)"
        return None

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) an image of this size has after the resize step (before cropping)."""
        if self.mode == "resize_and_crop":
            return self.load_size, self.load_size
        if self.mode in ("scale_width", "scale_width_and_crop"):
            if width == self.load_size and height >= self.crop_size:
                return width, height
            return self.load_size, int(max(self.load_size * height / width, self.crop_size))
        if self.mode == "none":
            m = SIZE_MULTIPLE_FOR_NONE
            return max(m, int(round(width / m) * m)), max(m, int(round(height / m) * m))
        return width, height

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) of the final image for an input of this size."""
        if "crop" in self.mode:
            return self.crop_size, self.crop_size
        return self.resized_size(width, height)

    def sample(self, width: int, height: int, generator: torch.Generator) -> Augmentation:
        """Draw the crop corner and the flip for an image of this size.

        Three numbers are always drawn, whatever the mode, so the stream stays aligned between modes.
        """
        resized_w, resized_h = self.resized_size(width, height)
        x = random_int(generator, max(0, resized_w - self.crop_size))
        y = random_int(generator, max(0, resized_h - self.crop_size))
        flip = bool(torch.rand((), generator=generator) < 0.5)
        return Augmentation(x, y, flip)

    def apply(self, image: Image.Image, augmentation: Augmentation, *, path: Path | str = "<image>") -> Image.Image:
        """Resize, crop and flip ``image`` as this mode and ``augmentation`` say (``path`` names it in errors)."""
        tv = _tv_functional()
        width, height = image.size
        resized_w, resized_h = self.resized_size(width, height)
        if (resized_w, resized_h) != (width, height):
            image = tv.resize(image, [resized_h, resized_w], interpolation=tv.InterpolationMode.BICUBIC)
        if "crop" in self.mode:
            if resized_w < self.crop_size or resized_h < self.crop_size:
                raise DataError(
                    f"{path} is {width}x{height}, smaller than data.crop_size {self.crop_size} "
                    f"(preprocess {self.mode!r} crops without resizing first)",
                    hint="use preprocess 'resize_and_crop' or a smaller data.crop_size",
                )
            x = min(augmentation.crop_x, resized_w - self.crop_size)
            y = min(augmentation.crop_y, resized_h - self.crop_size)
            image = tv.crop(image, y, x, self.crop_size, self.crop_size)
        if self.flip and augmentation.flip:
            image = tv.horizontal_flip(image)
        return image


#: ``data.augment.color_on``: which side colour jitter changes (A is the network input, B the target).
COLOR_SIDES: tuple[str, ...] = ("both", "A", "B")
#: The aspect-ratio range of the random resized crop when ``data.augment.ratio`` is not given (torchvision's).
DEFAULT_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class AugmentDraw:
    """The random choices of ``data.augment`` for one item (or one aligned pair).

    The crop is kept as fractions (area, log aspect ratio, horizontal and vertical position), so one
    draw gives the same box on two images of the same size; ``None`` where a transform is off.
    """

    crop: tuple[float, float, float, float] | None
    angle: float | None
    brightness: float | None
    contrast: float | None
    saturation: float | None
    hue: float | None


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


class Augment:
    """``data.augment``: random resized crop, rotation and colour jitter, seeded per item.

    Args:
        spec: the resolved ``data.augment`` mapping (``None`` or ``{}``: nothing, and nothing drawn):
            ``brightness``/``contrast``/``saturation`` (factor in [max(0, 1 - v), 1 + v]), ``hue`` (shift in
            [-v, v], at most 0.5), ``color_on`` (``both``, ``A`` or ``B``), ``scale`` ([low, high]: the
            crop's share of the image area; null: no crop), ``ratio`` (its aspect-ratio range),
            ``rotation`` (degrees, drawn in [-v, v]) and ``fill`` (grey level of the corners a rotation uncovers).

    The geometry (crop, then rotation) is applied to the image at its size after preprocessing and
    keeps that size; colour jitter follows, in the order brightness, contrast, saturation, hue.
    """

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        spec = dict(spec or {})
        self.brightness = float(spec.get("brightness") or 0.0)
        self.contrast = float(spec.get("contrast") or 0.0)
        self.saturation = float(spec.get("saturation") or 0.0)
        self.hue = float(spec.get("hue") or 0.0)
        self.color_on = str(spec.get("color_on") or "both")
        scale = spec.get("scale")
        self.scale = (float(scale[0]), float(scale[1])) if scale is not None else None
        ratio = spec.get("ratio") or DEFAULT_RATIO
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.rotation = float(spec.get("rotation") or 0.0)
        self.fill = int(spec.get("fill") or 0)
        for name in ("brightness", "contrast", "saturation", "rotation"):
            if getattr(self, name) < 0:
                raise DataError(f"data.augment.{name}: must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise DataError(f"data.augment.hue: must be between 0 and 0.5, got {self.hue!r}")
        if self.color_on not in COLOR_SIDES:
            raise DataError(f"data.augment.color_on: {self.color_on!r} is not one of {', '.join(COLOR_SIDES)}")
        if self.scale is not None and not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise DataError(f"data.augment.scale: expected [low, high] with 0 < low <= high <= 1, got "
                            f"{list(self.scale)}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise DataError(f"data.augment.ratio: expected [low, high] with 0 < low <= high, got {list(self.ratio)}")

    @property
    def geometric(self) -> bool:
        return self.scale is not None or self.rotation > 0

    @property
    def colour(self) -> bool:
        return any(v > 0 for v in (self.brightness, self.contrast, self.saturation, self.hue))

    @property
    def active(self) -> bool:
        return self.geometric or self.colour

    def randomness(self) -> str | None:
        """What this augmentation changes from load to load, or None when it is off."""
        parts = (["a random resized crop"] if self.scale is not None else []) + (
            ["a random rotation"] if self.rotation > 0 else []) + (["colour jitter"] if self.colour else [])
        return f"data.augment is on ({', '.join(parts)} per load)" if parts else None

    def colours(self, side: str) -> bool:
        """Whether colour jitter changes side ``A`` or ``B``."""
        return self.colour and self.color_on in ("both", side)

    def sample(self, generator: torch.Generator) -> AugmentDraw | None:
        """Draw this item's parameters from its generator (None, and nothing drawn, when off).

        Each transform that is on draws a fixed count of numbers, so the stream never depends on the
        image or on an earlier draw.
        """
        if not self.active:
            return None
        crop = None
        if self.scale is not None:
            crop = (_uniform(generator, *self.scale),
                    _uniform(generator, math.log(self.ratio[0]), math.log(self.ratio[1])),
                    _uniform(generator, 0.0, 1.0), _uniform(generator, 0.0, 1.0))
        angle = _uniform(generator, -self.rotation, self.rotation) if self.rotation > 0 else None

        def factor(amount: float) -> float | None:
            return _uniform(generator, max(0.0, 1.0 - amount), 1.0 + amount) if amount > 0 else None

        brightness, contrast, saturation = factor(self.brightness), factor(self.contrast), factor(self.saturation)
        hue = _uniform(generator, -self.hue, self.hue) if self.hue > 0 else None
        return AugmentDraw(crop, angle, brightness, contrast, saturation, hue)

    @staticmethod
    def crop_box(draw: AugmentDraw, width: int, height: int) -> tuple[int, int, int, int] | None:
        """``(top, left, height, width)`` of the draw's crop in an image of this size (None: no crop)."""
        if draw.crop is None:
            return None
        area, log_ratio, fx, fy = draw.crop
        ratio = math.exp(log_ratio)
        w = min(width, max(1, int(round(math.sqrt(width * height * area * ratio)))))
        h = min(height, max(1, int(round(math.sqrt(width * height * area / ratio)))))
        return int(round(fy * (height - h))), int(round(fx * (width - w))), h, w

    def apply(self, image: Image.Image, draw: AugmentDraw | None, *, colour: bool) -> Image.Image:
        """``image`` cropped, rotated and (when ``colour``) colour-jittered as ``draw`` says; same size."""
        if draw is None:
            return image
        tv = _tv_functional()
        width, height = image.size
        box = self.crop_box(draw, width, height)
        if box is not None:
            image = tv.resized_crop(image, *box, [height, width], interpolation=tv.InterpolationMode.BICUBIC)
        if draw.angle is not None:
            fill = self.fill if image.mode == "L" else [self.fill] * len(image.getbands())
            image = tv.rotate(image, draw.angle, interpolation=tv.InterpolationMode.BILINEAR, fill=fill)
        if colour:
            if draw.brightness is not None:
                image = tv.adjust_brightness(image, draw.brightness)
            if draw.contrast is not None:
                image = tv.adjust_contrast(image, draw.contrast)
            if draw.saturation is not None and image.mode == "RGB":
                image = tv.adjust_saturation(image, draw.saturation)
            if draw.hue is not None and image.mode == "RGB":
                image = tv.adjust_hue(image, draw.hue)
        return image


def to_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """A PIL image as a float tensor ``(channels, H, W)`` scaled to [-1, 1]."""
    tv = _tv_functional()
    image = to_channels(image, channels)
    tensor = tv.to_dtype(tv.pil_to_tensor(image), torch.float32, scale=True)
    return tensor.mul_(2.0).sub_(1.0)


class PreprocessedDataset(Dataset):
    """Base of the built-in datasets: checks the shared arguments and holds the per-item randomness.

    Subclasses list their files in ``__init__`` and build item ``i`` in ``_load(i)`` using
    :meth:`generator` for every random choice; ``__getitem__`` goes through :meth:`cached_item`, so
    that ``cache=True`` keeps every item in memory after its first load (``data.cache``: for small datasets whose items
    never change, such as the 32 px shapes world, where loading cost about 5% of a training step).
    """

    #: The epoch lives in shared memory, so workers kept across epochs follow :meth:`set_epoch`.
    epoch_reaches_persistent_workers = True

    def __init__(self, root: str | Path, split: str | None, direction: str, load_size: int, crop_size: int,
                 preprocess: str, flip: bool, input_nc: int, output_nc: int, seed: int,
                 max_items: int | None, cache: bool = False, augment: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise DataError(f"data.direction: expected 'AtoB' or 'BtoA', got {direction!r}",
                            hint=did_you_mean(str(direction), DIRECTIONS))
        for key, value in (("input_nc", input_nc), ("output_nc", output_nc)):
            if value not in (1, 3) or isinstance(value, bool):
                raise DataError(f"data.{key}: images load with 1 (grayscale) or 3 (RGB) channels, got {value!r}")
        if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
            raise DataError(f"data.max_items: expected a positive integer or null, got {max_items!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataError(f"data.seed: expected an integer, got {seed!r}")
        self.root = Path(root).expanduser()
        self.split = split
        self.direction = direction
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.seed = seed
        self.max_items = max_items
        self.preprocess = Preprocess(preprocess, load_size, crop_size, bool(flip))
        self.augment = Augment(augment)
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None
        # In shared memory, so persistent DataLoader workers (which keep the copy of the dataset
        # they started with) still see the epoch the trainer sets.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random crops/flips/pairings the next items use.

        Call it before creating the DataLoader iterator of that epoch; workers started earlier
        (``persistent_workers``) see it too.
        """
        self._epoch.fill_(int(epoch))

    def generator(self, index: int) -> torch.Generator:
        """The random stream of item ``index`` in the current epoch."""
        return item_generator(self.seed, self.epoch, index)

    def item_randomness(self) -> str | None:
        """What makes item ``i`` differ between epochs, or None when it never does (then it may be cached)."""
        return self.preprocess.randomness() or self.augment.randomness()

    def check_cache(self) -> None:
        """Refuse ``cache=True`` when items change between epochs: a cache would freeze the augmentation."""
        reason = self.item_randomness() if self._cache is not None else None
        if reason:
            raise DataError(f"data.cache: items of {type(self).__name__} change from epoch to epoch because {reason}, "
                            "so they cannot be kept in memory",
                            hint="set data.cache=false, or make the items fixed (data.flip=false, no data.augment, "
                                 "and data.preprocess=none, or resize_and_crop with load_size == crop_size)")

    def cached_item(self, index: int, load: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """``load(index)``, from memory after the first time when the dataset was built with ``cache=True``."""
        if self._cache is None:
            return load(index)
        item = self._cache.get(index)
        if item is None:
            item = self._cache[index] = load(index)
        return item

    def _load(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.cached_item(index, self._load)

    def __len__(self) -> int:
        raise NotImplementedError
