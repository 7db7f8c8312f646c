"""Features from inside a registered generator, taken with forward hooks (CUT's ``--nce_layers``).

The official code asks its ``ResnetGenerator`` for the outputs of chosen entries of its
``nn.Sequential`` (``--nce_layers 0,4,8,12,16``) and stops there. Here nothing in the generator
changes: :class:`FeatureTaps` registers a forward hook on each chosen submodule for the length of
one call, keeps what it outputs, and hands the rest of the network an empty batch after the last
tap, so that the decoder costs nothing (the official ``encode_only``) while the call stays one
ordinary call of the network (data-parallel wrappers see a normal forward).

**What the official indices mean.** They index the official *default* generator, which
down-samples with a stride-1 conv followed by a blur (``no_antialias=False``):

====  =====================================  ==========================  ===========================
 idx  official default layer                 ``resnet_*_antialias``      ganzoo ``resnet_*blocks``
====  =====================================  ==========================  ===========================
   0  ReflectionPad2d(3): the padded input   ``model.0``                 ``model.0``
   4  1st down-sampling conv (pre-norm)      ``model.4``                 ``model.4`` (stride 2)
   8  2nd down-sampling conv (pre-norm)      ``model.8``                 ``model.7`` (stride 2)
  12  1st residual block                     ``model.12``                ``model.10``
  16  5th residual block                     ``model.16``                ``model.14``
====  =====================================  ==========================  ===========================

ganzoo's ``resnet_9blocks`` is the official network built with ``--no_antialias --no_antialias_up``
(the same parameters, strided convolutions). An official index is translated by the *role* of its
layer, so 0,4,8,12,16 tap the padded input, both down-sampling convolutions and blocks 1 and 5 on
either network. On the strided network the two convolution taps are at half the resolution (the
stride is inside the convolution), and a blur has no layer of its own: its role falls to the ReLU
before it, which holds the down-sampled features. An official ``--no_antialias`` run would instead
tap its own indices literally; give module names (``["model.0", "model.4", "model.8", ...]``) to
reproduce that. Strings are module names of the generator (``G.get_submodule``) and work with any
registered generator; integers need one of the two ResNet generators.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import ComponentError
from ganzoo.generators.resnet import DOWNSAMPLINGS, ResnetBlock, ResnetGenerator

from ganzoo_cut.antialias import AntialiasResnetGenerator, BlurDownsample, BlurUpsample

#: The official default: the padded input, both down-sampling convolutions, residual blocks 1 and 5.
OFFICIAL_NCE_LAYERS: tuple[int, ...] = (0, 4, 8, 12, 16)


def resnet_layout(n_blocks: int, antialias: bool, antialias_up: bool) -> list[str]:
    """The role of every entry of a ResNet generator's ``model`` Sequential, in order."""
    roles = ["input.pad", "input.conv", "input.norm", "input.relu"]
    for i in range(1, DOWNSAMPLINGS + 1):
        roles += [f"down{i}.conv", f"down{i}.norm", f"down{i}.relu"] + ([f"down{i}.blur"] if antialias else [])
    roles += [f"block{k}" for k in range(1, n_blocks + 1)]
    for i in range(1, DOWNSAMPLINGS + 1):
        roles += ([f"up{i}.blur"] if antialias_up else []) + [f"up{i}.conv", f"up{i}.norm", f"up{i}.relu"]
    return roles + ["output.pad", "output.conv", "output.tanh"]


def _unwrap(net: nn.Module) -> nn.Module:
    """The network inside a data-parallel wrapper (ganzoo's ``DistributedNetwork`` keeps it as ``module``)."""
    from ganzoo.training.distributed import unwrap

    return unwrap(net)


def _role_fits(role: str, module: nn.Module) -> bool:
    part = role.split(".")[-1]
    if role.startswith("block"):
        return isinstance(module, ResnetBlock)
    if part == "pad":
        return isinstance(module, nn.ReflectionPad2d)
    if part == "conv":
        return isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    if part == "relu":
        return isinstance(module, nn.ReLU)
    if part == "blur":
        return isinstance(module, (BlurDownsample, BlurUpsample))
    if part == "tanh":
        return isinstance(module, nn.Tanh)
    return True  # a norm (any class, nn.Identity for none), always right after a conv


def _own_layout(G: nn.Module) -> dict[str, int] | None:
    """Role -> index in ``G.model`` for the two ResNet generators; None for any other network.

    The roles are matched against the Sequential's entries in order, so entries the official network
    does not have (a self-attention block among the residual blocks) are stepped over.
    """
    if isinstance(G, AntialiasResnetGenerator):
        expected = resnet_layout(G.n_blocks, G.antialias, G.antialias_up)
    elif isinstance(G, ResnetGenerator):
        expected = resnet_layout(G.n_blocks, False, False)
    else:
        return None
    body = getattr(G, "model", None)
    if not isinstance(body, nn.Sequential):
        return None
    found: dict[str, int] = {}
    for index, module in enumerate(body):
        if len(found) < len(expected) and _role_fits(expected[len(found)], module):
            found[expected[len(found)]] = index
    return found if len(found) == len(expected) else None


def resolve_layers(G: nn.Module, layers: Sequence[int | str]) -> list[tuple[str, nn.Module]]:
    """``(module name, module)`` of each entry of ``layers`` in ``G``; a ComponentError saying why not.

    Integers are official layer indices (see the module docstring), strings module names.
    """
    G = _unwrap(G)
    if not layers:
        raise ComponentError("at least one layer is needed")
    if len(set(layers)) != len(layers):
        raise ComponentError(f"{list(layers)} names a layer twice")
    own = _own_layout(G)
    out = []
    for entry in layers:
        if isinstance(entry, str):
            try:
                module = G.get_submodule(entry)
            except AttributeError:
                names = [n for n, _ in G.named_children()]
                raise ComponentError(f"{type(G).__name__} has no submodule {entry!r}",
                                     hint=f"its top-level modules: {', '.join(names)}") from None
            if module is G:
                raise ComponentError("'' is the whole generator, not one of its layers")
            out.append((entry, module))
            continue
        if own is None:
            raise ComponentError(f"layer index {entry} needs a ResNet generator (resnet_*, resnet_*_antialias); "
                                 f"{type(G).__name__} has no official layer numbering",
                                 hint="give module names instead, e.g. [\"model.0\", \"model.4\"]")
        official = resnet_layout(G.n_blocks, True, True)
        if not 0 <= entry < len(official):
            raise ComponentError(f"layer index {entry} is outside 0..{len(official) - 1} "
                                 f"(the official {G.n_blocks}-block generator)")
        role = official[entry]
        if role not in own and role.endswith(".blur") and role.startswith("down"):
            role = role.replace(".blur", ".relu")  # the down-sampled features, the blur being inside the conv
        if role not in own:
            raise ComponentError(f"layer index {entry} ({role} of the official generator) has no counterpart "
                                 f"in {type(G).__name__}", hint="choose another layer or give a module name")
        name = f"model.{own[role]}"
        out.append((name, G.get_submodule(name)))
    return out


class FeatureTaps:
    """The features a generator computes at chosen layers, for one input batch at a time.

    Args:
        G: the generator (a data-parallel wrapper is looked through).
        layers: official indices or module names (:func:`resolve_layers`).

    Calling ``taps(net, x)`` runs ``net(x)`` once (``net`` is the network as the model holds it, which
    may be wrapped for data parallelism) and returns the features in the order of ``layers``. The
    layers are looked up by name at every call, so a module an accelerator plugin swapped in is the
    one tapped. When every tap is an entry of a ResNet generator's ``model`` Sequential, the entries
    after the last tap see an empty batch.
    """

    def __init__(self, G: nn.Module, layers: Sequence[int | str]) -> None:
        inner = _unwrap(G)
        self.names = [name for name, _ in resolve_layers(inner, layers)]
        positions = [int(name.split(".")[1]) if re.fullmatch(r"model\.\d+", name) else None for name in self.names]
        self.stop_after: str | None = None
        if _own_layout(inner) is not None and all(p is not None for p in positions):
            self.stop_after = f"model.{max(p for p in positions if p is not None)}"

    def __call__(self, net: Callable[[torch.Tensor], Any], x: torch.Tensor) -> list[torch.Tensor]:
        inner = _unwrap(net)  # type: ignore[arg-type]
        found: list[torch.Tensor | None] = [None] * len(self.names)
        slots: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            slots.setdefault(name, []).append(i)

        def hook_for(indices: list[int], stop: bool) -> Callable[..., Any]:
            def keep(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
                for i in indices:
                    found[i] = output
                return output[:0] if stop else None  # an empty batch from here on: nothing left to compute
            return keep

        handles = [inner.get_submodule(name).register_forward_hook(hook_for(indices, name == self.stop_after))
                   for name, indices in slots.items()]
        try:
            net(x)
        finally:
            for handle in handles:
                handle.remove()
        missing = [self.names[i] for i, f in enumerate(found) if f is None]
        if missing:
            raise ComponentError(f"the generator's forward never ran {', '.join(missing)}")
        return [f for f in found if f is not None]
