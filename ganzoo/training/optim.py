"""Optimizers from the recipe: ``train.optimizer`` for every update group, ``train.optimizers.<group>`` for one."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import RecipeError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def make_optimizer(params: Iterable[nn.Parameter], spec: Mapping[str, Any], device: torch.device
                   ) -> torch.optim.Optimizer:
    """An optimizer from ``{type: adam, lr: 2e-4, betas: [0.5, 0.999], ...}``.

    Adam and AdamW take their fused kernel on CUDA and on the CPU unless the recipe chooses
    (``fused`` / ``foreach``): it is the fastest of torch's three implementations on both, and the
    one that updates inside the backward (``train.step_in_backward``) can use.
    """
    kwargs = dict(spec)
    kind = kwargs.pop("type", "adam")
    if kind not in OPTIMIZERS:
        raise RecipeError("train.optimizer.type", f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if kind in ("adam", "adamw") and "fused" not in kwargs and "foreach" not in kwargs \
            and device.type in ("cuda", "cpu"):
        kwargs["fused"] = True
    return OPTIMIZERS[kind](list(params), **kwargs)


def make_optimizers(networks: Mapping[str, nn.Module], groups: Mapping[str, list[str]],
                    default: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]] | None,
                    device: torch.device) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per update group (``{"G": ["G_A", "G_B"]}``) over its networks' parameters."""
    overrides = overrides or {}
    return {name: make_optimizer([p for net in nets for p in networks[net].parameters()],
                                 overrides.get(name, default), device)
            for name, nets in groups.items()}
