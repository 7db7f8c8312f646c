"""Plain functions the models share for their networks: building them from a recipe, freezing them,
and running several calls as one. Not a base class: each model stays readable on its own."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from ganzoo.contracts import ensure_contract
from ganzoo.layers import init_weights
from ganzoo.recipe.schema import plain
from ganzoo.registry import build


def build_networks(networks: Mapping[str, Mapping[str, Any]], init: Mapping[str, Any], names: Iterable[str],
                   kinds: Mapping[str, str]) -> nn.ModuleDict:
    """Build and initialise the networks ``names`` declared under ``model.networks``."""
    nets = nn.ModuleDict()
    for name in names:
        spec = plain(networks[name])  # constructors get lists and dicts, as written in the recipe
        component = spec.pop("type")
        net = ensure_contract(kinds[name], component, build(kinds[name], component, **spec),
                              where=f"model.networks.{name}")
        if not spec.get("pretrained", False):  # pretrained backbones keep their weights
            init_weights(net, init.get("type", "normal"), init.get("gain", 0.02))
        nets[name] = net
    return nets


def set_requires_grad(nets: Iterable[nn.Module | None], flag: bool) -> None:
    """Switch gradient tracking of whole networks (discriminators during the generator step)."""
    for net in nets:
        if net is not None:
            for p in net.parameters():
                p.requires_grad_(flag)


def has_batch_statistics(net: nn.Module) -> bool:
    """Whether ``net`` mixes samples of a batch (batch norm): then stacking two calls changes maths."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def run_stacked(net: nn.Module, *calls: torch.Tensor | tuple[torch.Tensor, ...], always: bool = False) -> list[Any]:
    """``[net(*args) for args in calls]`` in one call when the network treats samples independently.

    Each call is a tensor or a tuple of positional tensors (``(A, z)`` for a generator). One call on
    the stacked batch is exact for per-sample networks (instance norm, no norm) and cheaper; with
    batch statistics the calls stay separate so results match the official formulation, unless
    ``always`` asks for one call anyway (batch statistics then span all the calls' samples).
    """
    arg_lists = [c if isinstance(c, tuple) else (c,) for c in calls]
    if len(arg_lists) == 1 or (has_batch_statistics(net) and not always):
        return [net(*args) for args in arg_lists]
    sizes = [args[0].shape[0] for args in arg_lists]
    stacked = [torch.cat(column, 0) for column in zip(*arg_lists)]
    out = net(*stacked)
    if isinstance(out, (list, tuple)):
        parts = [o.split(sizes, 0) for o in out]
        return [[p[i] for p in parts] for i in range(len(arg_lists))]
    return list(out.split(sizes, 0))
