"""Trained models for notebooks and scripts: ``ganzoo.load`` and the helpers ``ganzoo sample`` uses.

    model = ganzoo.load("runs/quickstart")              # a run folder or a checkpoint file
    A = load_input_images(["datasets/shapes-multimodal-32/val/00000.png"], model)[0][1].unsqueeze(0)
    outputs = model.sample(A, num_z=8)                   # (1, 8, C, H, W) in [-1, 1]

(an A|B file of the model's aligned dataset gives its input half, with the channels G reads).

A checkpoint carries its resolved recipe, so the model class and every network are rebuilt from
it; no architecture argument is ever repeated. Networks are returned in eval mode.

A checkpoint is data: loading one never imports the plugins its recipe lists. Components that come
from plugins need ``plugins=[...]`` (or ``trust_checkpoint_plugins=True``); without them the error
names the plugins the checkpoint lists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import CheckpointError, ComponentError, DataError, GanzooError, RecipeError
from ganzoo.plugins import activate_plugins, missing_plugins_error
from ganzoo.recipe import resolve_recipe
from ganzoo.recipe.schema import Recipe
from ganzoo.training.checkpoint import CheckpointDir, check_model_payload, load_checkpoint, load_network_state
from ganzoo.training.ema import apply_stored_average


def resolve_checkpoint(run_or_checkpoint: str | os.PathLike[str]) -> Path:
    """The checkpoint file a path names: the file itself, or ``RUN/checkpoints/latest.pt`` for a run folder."""
    path = Path(run_or_checkpoint).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.pt", path / "latest.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{path} is a folder without checkpoints/latest.pt",
                              hint="pass a run folder written by `ganzoo train` or a checkpoint file (.pt)")
    if path.exists():
        raise CheckpointError(f"{path} is neither a checkpoint file nor a run folder (a FIFO or device?)")
    raise CheckpointError(f"{path} does not exist",
                          hint="pass a run folder written by `ganzoo train` or a checkpoint file (.pt)")


def read_model_checkpoint(run_or_checkpoint: str | os.PathLike[str],
                          warn: Any = None) -> tuple[dict[str, Any], Path]:
    """``(payload, path)`` of the checkpoint a path names, checked to hold a recipe and networks.

    A run folder gives its newest usable checkpoint: a damaged newest one is skipped with a warning
    (``warn``, default :func:`warnings.warn`), as ``--resume`` does; one carrying code stops it.
    """
    path = Path(run_or_checkpoint).expanduser()
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            directory = CheckpointDir(folder)
            if directory.step_files() or directory.latest.exists():
                return directory.load_latest(warn=warn, check=check_model_payload)
        resolve_checkpoint(path)  # raises the "no checkpoints" error
    path = resolve_checkpoint(path)
    payload = load_checkpoint(path)
    check_model_payload(payload, path)
    return payload, path


def build_model(recipe: Recipe, device: torch.device | str = "cpu") -> nn.Module:
    """The model a resolved recipe describes, with freshly initialised networks (no optimizers)."""
    from ganzoo.registry import get_component

    model_cls = get_component("model", recipe.model.type).factory
    return model_cls(recipe, device)


def load(run_or_checkpoint: str | os.PathLike[str], device: torch.device | str | None = None, *,
         ema: bool = True, plugins: list[str] | tuple[str, ...] = (), trust_checkpoint_plugins: bool = False,
         command: str | None = None, warn: Any = None) -> nn.Module:
    """Load a trained model from a run folder or a checkpoint file.

    Args:
        run_or_checkpoint: a run folder (its newest usable checkpoint) or a ``.pt`` file written by
            ``ganzoo train`` or ``ganzoo import-official``.
        device: where the networks go; ``None`` picks the recipe's ``train.device`` rule (``auto``:
            CUDA when present, else the CPU).
        ema: use the generators' weight average when the run kept one (``train.ema``); False gives
            the trained weights themselves.
        plugins: plugins to import first (module names or ``.py`` paths), as ``--plugin`` does.
        trust_checkpoint_plugins: also import the plugins the checkpoint's recipe lists. Off by default:
            a checkpoint is data, and a crafted one could name any file.
        command: the CLI command loading it, for the error's hint.
        warn: called with a message when a run folder's newest checkpoint is skipped (default:
            :func:`warnings.warn`).

    Returns:
        The model (``pix2pix``, ``cyclegan``, ``bicyclegan`` ...) in eval mode, with its networks by
        name (``model.networks["G"]``), ``model.sample(A, z=None, num_z=1)``, and the attributes
        ``recipe`` (the stored resolved recipe), ``step``, ``checkpoint_path`` and
        ``uses_weight_average``.

    Raises:
        CheckpointError: the file is missing, damaged, refused (it carries code), has no recipe, or
            needs a component from a plugin that was not imported (the plugins are named).
    """
    from ganzoo.training.device import resolve_device

    payload, path = read_model_checkpoint(run_or_checkpoint, warn=warn)
    stored = payload["recipe"]
    # A checkpoint is data: its plugins are imported only when the caller says so.
    pending = activate_plugins(cli=plugins, recipe=stored, trust_recipe=trust_checkpoint_plugins,
                               recipe_source=f"the recipe stored in {path}")
    try:
        recipe = resolve_recipe(stored, source=str(path))
        if isinstance(device, torch.device):
            target = device
        elif device is not None:  # an error names it as the command's --device, not as train.device
            target = resolve_device(device, key="--device")
        else:
            target = resolve_device(recipe.train.device)
        model = build_model(recipe, target)
    except (ComponentError, RecipeError) as error:
        raise missing_plugins_error(path, error, pending, command) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its stored recipe cannot rebuild the model ({type(exc).__name__}: {exc})",
                              hint="the checkpoint was edited or written by another ganzoo version") from None
    networks = payload.get("networks") or {}
    for name, net in model.networks.items():
        if name not in networks:
            raise CheckpointError(f"{path} has no network {name} (it has {', '.join(networks) or 'none'})")
        load_network_state(name, net, networks[name], str(path))
    model.uses_weight_average = ema and apply_stored_average(model, payload, str(path))
    model.eval()
    model.recipe = recipe
    model.step = int(payload.get("step", 0) or 0)
    model.checkpoint_path = path
    model.imported_from = payload.get("imported_from")
    return model


# -- inputs ---------------------------------------------------------------------------------------
def input_channels(model: nn.Module, direction: str = "AtoB") -> int:
    """Channels of the images the model's generator for ``direction`` reads."""
    nets = model.networks
    if "G" in nets:
        return int(nets["G"].input_nc)
    return int(nets["G_A" if direction == "AtoB" else "G_B"].input_nc)


def test_preprocess(recipe: Recipe) -> Any:
    """The test-time preprocessing of a recipe: resize to ``data.crop_size`` square, no flip, no random crop."""
    from ganzoo.data.transforms import Preprocess

    size = recipe.data.crop_size
    return Preprocess("resize_and_crop", load_size=size, crop_size=size, flip=False)


def list_inputs(path: str | os.PathLike[str]) -> list[Path]:
    """The image files ``path`` names: one file, or every image under a folder (sorted)."""
    from ganzoo.data.images import IMAGE_EXTENSIONS, list_images

    path = Path(path).expanduser()
    if path.is_file():
        if not path.name.lower().endswith(IMAGE_EXTENSIONS):
            raise DataError(f"{path} is not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        return [path]
    if path.is_dir():
        return list_images(path)
    if path.exists():
        raise DataError(f"input {path} is not a regular file or folder (a FIFO, socket or device?)")
    raise DataError(f"input {path} does not exist")


def recipe_input_channels(recipe: Recipe, direction: str = "AtoB") -> int:
    """Channels of the images a recipe's generator reads: ``data.input_nc``, else the generator's
    ``input_nc`` (``G``, or CycleGAN's ``G_A``/``G_B`` for ``direction``), else 3."""
    if recipe.data.input_nc is not None and direction == "AtoB":
        return int(recipe.data.input_nc)
    networks = recipe.model.networks
    name = "G" if "G" in networks else ("G_A" if direction == "AtoB" else "G_B")
    value = networks.get(name, {}).get("input_nc")
    return int(value) if isinstance(value, int) else 3


def is_pair_image(width: int, height: int) -> bool:
    """Whether an image of this size looks like an A|B pair of an aligned dataset: twice as wide as high."""
    return height > 0 and width == 2 * height


def load_input_images(paths: list[Path] | list[str], source: nn.Module | Recipe, *, channels: int | None = None,
                      pairs: bool | None = None, direction: str | None = None) -> list[tuple[Path, torch.Tensor]]:
    """Read and preprocess input images as ``(path, tensor (C, H, W) in [-1, 1])``.

    Args:
        paths: image files (:func:`list_inputs` lists a folder).
        source: the model (from :func:`load`) or its resolved recipe: the preprocessing (``data.crop_size``),
            the channels and the pairing come from it.
        channels: default: what the model's generator reads (one for the shapes world's outlines).
        pairs: whether files are A|B side-by-side pairs (an aligned dataset's files), of which only the
            input half is kept. None (default): a file twice as wide as high is a pair when the recipe
            trains on aligned data, and an error naming ``pairs``/``--pairs`` otherwise; other files are
            used whole. True: every file is a pair. False: every file is used whole.
        direction: which half of a pair is the input: ``AtoB`` the left, ``BtoA`` the right (default: the
            recipe's ``data.direction``, the half the model was trained on); for a model, also which
            CycleGAN generator's channels apply.

    Raises:
        DataError: a file cannot be read, a pair has an odd width, or a 2:1 file is ambiguous.
    """
    from ganzoo.data.images import read_image
    from ganzoo.data.transforms import Augmentation, to_tensor

    recipe: Recipe = source if isinstance(source, Recipe) else source.recipe  # type: ignore[assignment]
    half = direction or recipe.data.direction
    if channels is None:
        channels = (recipe_input_channels(recipe, direction or "AtoB") if isinstance(source, Recipe)
                    else input_channels(source, direction or "AtoB"))
    aligned = "aligned" in recipe.data.dataset and "unaligned" not in recipe.data.dataset
    preprocess = test_preprocess(recipe)
    no_randomness = Augmentation(0, 0, False)
    loaded = []
    for path in map(Path, paths):
        image = read_image(path)
        width, height = image.size
        split = pairs
        if split is None:
            split = is_pair_image(width, height)
            if split and not aligned:
                raise DataError(f"{path} is {width}x{height}, twice as wide as high: an A|B pair? This model was "
                                f"trained on {recipe.data.dataset} data, whose files are single images",
                                hint="--pairs (pairs=True) uses its input half, --no-pairs (pairs=False) the whole "
                                     "image")
        if split:
            if width % 2:
                raise DataError(f"{path} is {width}x{height}: an A|B pair needs an even width",
                                hint="--no-pairs (pairs=False) uses the whole image")
            box = (0, 0, width // 2, height) if half == "AtoB" else (width // 2, 0, width, height)
            image = image.crop(box)
        image = preprocess.apply(image, no_randomness, path=path)
        loaded.append((path, to_tensor(image, channels)))
    return loaded


# -- latent codes ---------------------------------------------------------------------------------
def model_nz(model: nn.Module) -> int:
    """Length of the model's latent code (0: one output per input)."""
    return int(getattr(model, "nz", 0) or 0)


def random_latents(num: int, nz: int, seed: int | None = None, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """``num`` standard-normal codes of length ``nz`` (shape ``(*shape, num, nz)``), from ``seed`` when given."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(*shape, num, nz, generator=generator)


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` codes on the straight line from ``z0`` to ``z1`` (both ends included): (steps, nz)."""
    if steps < 2:
        raise GanzooError(f"--interp needs at least 2 steps, got {steps}")
    weights = torch.linspace(0.0, 1.0, steps).unsqueeze(1)
    return (1 - weights) * z0.reshape(1, -1) + weights * z1.reshape(1, -1)


@torch.no_grad()
def generate(model: nn.Module, A: torch.Tensor, z: torch.Tensor | None = None, *, num_z: int = 1,
             direction: str = "AtoB") -> torch.Tensor:
    """Outputs ``(N, K, C, H, W)`` for inputs ``A`` (N, C, H, W): ``z`` (K, nz) shared by all inputs.

    Models without a latent code return one output per input (K = 1) whatever ``z`` and ``num_z`` are.
    """
    if "G_A" in model.networks:
        return model.sample(A, direction=direction)
    if model_nz(model) == 0:
        return model.sample(A)
    return model.sample(A, z=z, num_z=num_z)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as uint8 in [0, 255] (what a saved PNG holds)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images back to floats in [-1, 1]."""
    return images.float() / 127.5 - 1.0


__all__ = [
    "build_model",
    "from_uint8",
    "generate",
    "input_channels",
    "interpolate_latents",
    "list_inputs",
    "load",
    "is_pair_image",
    "load_input_images",
    "model_nz",
    "random_latents",
    "read_model_checkpoint",
    "recipe_input_channels",
    "resolve_checkpoint",
    "test_preprocess",
    "to_uint8",
]
