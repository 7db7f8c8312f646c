"""ganzoo: pix2pix, CycleGAN and BicycleGAN from one registry of interchangeable parts.

The public API::

    ganzoo.build(kind, name, **kwargs)     # any registered component
    ganzoo.list_components(kind=None)      # {kind: [names]}
    ganzoo.register(kind, name)            # decorator for your own components
    ganzoo.load(run_or_checkpoint)         # a trained model: model.networks["G"], model.sample(A, num_z=8)
    ganzoo.train(recipe, overrides, out)   # train a recipe file (or a resolved Recipe) into a run folder

Nothing here imports torch until a function that needs it is called.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ganzoo.errors import GanzooError
from ganzoo.registry import KINDS, build, get_component, list_components, register, register_preset

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch

    from ganzoo.recipe.schema import Recipe
    from ganzoo.training.trainer import TrainResult

__version__ = "0.1.0"


def load(run_or_checkpoint: str | os.PathLike[str], device: str | torch.device | None = None, *,
         ema: bool = True, plugins: list[str] | tuple[str, ...] = (),
         trust_checkpoint_plugins: bool = False) -> torch.nn.Module:
    """Load a trained model from a run folder or checkpoint; see :func:`ganzoo.inference.load`.

    The plugins a checkpoint's recipe lists are never imported unless asked: pass them as
    ``plugins=[...]``, or ``trust_checkpoint_plugins=True`` for a checkpoint you trust.
    """
    from ganzoo.inference import load as _load

    return _load(run_or_checkpoint, device=device, ema=ema, plugins=plugins,
                 trust_checkpoint_plugins=trust_checkpoint_plugins)


def train(recipe: str | os.PathLike[str] | Recipe, overrides: Iterable[str] = (), out: str | os.PathLike[str] | None = None,
          *, progress: bool = True) -> TrainResult:
    """Train a recipe into a run folder, as ``ganzoo train`` does; returns the :class:`TrainResult`.

    Args:
        recipe: a recipe file (its plugins are imported, as ``ganzoo train`` imports them) or a resolved
            :class:`~ganzoo.recipe.schema.Recipe` (``ganzoo.recipe.prepare_recipe``).
        overrides: ``KEY=VALUE`` texts, as ``--set`` takes them.
        out: the run folder (default: ``runs/<recipe name>``, as ``ganzoo train``); one that already holds
            a run is refused (``ganzoo train --resume`` continues a run).
        progress: a progress bar on a terminal (plain lines elsewhere); False: a line every ``log.every`` steps.

    Returns:
        ``TrainResult(out_dir, step, total_steps, losses, seconds, evaluation)``; ``evaluation`` holds the
        end-of-run scores when the recipe sets ``log.final_eval``.
    """
    from pathlib import Path

    from ganzoo.cli.options import safe_folder_name
    from ganzoo.recipe import prepare_recipe, resolve_recipe
    from ganzoo.recipe.load import apply_overrides
    from ganzoo.recipe.schema import Recipe
    from ganzoo.training.trainer import Trainer

    overrides = list(overrides)
    if isinstance(recipe, Recipe):
        resolved = resolve_recipe(apply_overrides(recipe.to_dict(), overrides)) if overrides else recipe
        stem = resolved.name
    else:
        resolved = prepare_recipe(recipe, overrides)
        stem = Path(recipe).stem
    folder = Path(out) if out is not None else Path("runs") / safe_folder_name(resolved.name, stem)
    return Trainer(resolved, folder, show_progress=progress).run()


__all__ = [
    "KINDS",
    "GanzooError",
    "__version__",
    "build",
    "get_component",
    "list_components",
    "load",
    "register",
    "register_preset",
    "train",
]
