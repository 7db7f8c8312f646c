"""ganzoo: pix2pix, CycleGAN and BicycleGAN from one registry of interchangeable parts.

The public API::

    ganzoo.build(kind, name, **kwargs)     # any registered component
    ganzoo.list_components(kind=None)      # {kind: [names]}
    ganzoo.register(kind, name)            # decorator for your own components
    ganzoo.load(run_or_checkpoint)         # a trained model: model.networks["G"], model.sample(A, num_z=8)
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ganzoo.errors import GanzooError
from ganzoo.registry import KINDS, build, get_component, list_components, register, register_preset

if TYPE_CHECKING:
    import torch

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
]
