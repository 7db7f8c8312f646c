"""Import networks saved by the official pix2pix / CycleGAN / BicycleGAN code into a ganzoo checkpoint.

The official repositories save one ``state_dict`` per network (``latest_net_G.pth``,
``latest_net_G_A.pth``, ``latest_net_E.pth`` ...). ganzoo's networks have the same layers in the
same order, under other names; this module maps every ganzoo key to the official key holding the
same tensor. The rules, read from the official architectures:

- **U-Net, pix2pix** (``UnetGenerator``, nz = 0): blocks nest as ``model.model.1.model.3.model...``;
  level ``l``'s block is ``[LeakyReLU (l > 0)] + down layers + [inner block (not innermost)] + up
  layers``, so a layer's index is its position in that list. Identity norms (``norm: none``) are
  real modules there and count.
- **U-Net, BicycleGAN ``G_Unet_add_input``** (``inject: input``): the same nesting, but absent norms
  are left out of the list, so they do not count.
- **U-Net, BicycleGAN ``G_Unet_add_all``** (``inject: all``): ``model.submodule.submodule...`` with
  separate ``down`` and ``up`` sequences (``down`` starts with the LeakyReLU below the outermost level).
- **ResNet generator** (CycleGAN): identical, except a residual block's ``residual`` is ``conv_block``.
- **PatchGAN / PixelGAN discriminators**: identical keys (``model.N`` / ``net.N``).
- **Multiscale discriminator** (BicycleGAN ``D_NLayersMulti``): scale ``k`` is ``model_k`` (``model``
  when there is one scale).
- **Encoders** (BicycleGAN ``E_ResNet`` / ``E_NLayers``): ``features`` is ``conv``, a residual block's
  main branch is ``conv`` with its last conv and pool grouped as one ``convMeanpool``; the heads
  ``fc_mu`` / ``fc_logvar`` are ``fc.0`` / ``fcVar.0``.

Official files are read with ``torch.load(weights_only=True)``; a shape or key that does not fit
is an error naming the official key and the ganzoo key.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.recipe.schema import Recipe
from ganzoo.training.checkpoint import read_tensor_file
from ganzoo.errors import CheckpointError, GanzooError

#: ``latest_net_G_A.pth`` / ``200_net_E.pth`` -> the network name after ``net_``.
_OFFICIAL_FILE = re.compile(r"^(?:.*_)?net_(?P<name>[A-Za-z0-9_]+)\.pth$")
#: Buffers old official checkpoints carry for instance norms that no longer track statistics.
_STALE_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _is_absent_norm(module: nn.Module) -> bool:
    from ganzoo.layers.norms import NoNorm

    return isinstance(module, NoNorm)


# -- U-Net ----------------------------------------------------------------------------------------
def _unet_lists(net: nn.Module, level: int, keep_identity: bool) -> tuple[list[Any], list[Any]]:
    """The official down and up module lists of one level (our modules, "lrelu" for the functional one)."""
    keep = (lambda m: True) if keep_identity else (lambda m: not _is_absent_norm(m))
    down: list[Any] = (["lrelu"] if level > 0 else []) + [m for m in net.down[level] if keep(m)]
    up = [m for m in net.up[level] if keep(m)]
    return down, up


def _unet_key(net: nn.Module, key: str) -> str:
    side, level_text, index_text, param = key.split(".", 3)
    level, index = int(level_text), int(index_text)
    module = (net.down if side == "down" else net.up)[level][index]
    innermost = net.num_downs - 1
    if net.nz > 0 and net.inject == "all":  # G_Unet_add_all: separate down/up sequences per block
        down, up = _unet_lists(net, level, keep_identity=False)
        position = (down if side == "down" else up).index(module)
        return "model." + "submodule." * level + f"{side}.{position}.{param}"
    keep_identity = net.nz == 0  # pix2pix keeps Identity norms as modules; BicycleGAN leaves them out
    prefix = "model."
    for outer in range(level):
        outer_down, _ = _unet_lists(net, outer, keep_identity)
        prefix += f"model.{len(outer_down)}."  # the inner block sits right after the down layers
    down, up = _unet_lists(net, level, keep_identity)
    if side == "down":
        position = down.index(module)
    else:
        position = len(down) + (1 if level < innermost else 0) + up.index(module)
    return f"{prefix}model.{position}.{param}"


# -- encoders -------------------------------------------------------------------------------------
def _kept_position(sequence: nn.Sequential, index: int) -> int:
    return [i for i, m in enumerate(sequence) if not _is_absent_norm(m)].index(index)


def _head_key(key: str) -> str:
    _, layer, param = key.split(".", 2)
    return f"{'fc' if layer == 'fc_mu' else 'fcVar'}.0.{param}"


def _resnet_encoder_key(net: nn.Module, key: str) -> str:
    if key.startswith("head."):
        return _head_key(key)
    parts = key.split(".")
    block = int(parts[1])
    if len(parts) == 3:  # the first conv
        return f"conv.{block}.{parts[2]}"
    branch, index, param = parts[2], int(parts[3]), parts[4]
    if branch == "shortcut":
        return f"conv.{block}.shortcut.{index}.{param}"
    residual = net.features[block].residual
    kept = [i for i, m in enumerate(residual) if not _is_absent_norm(m)]
    position = kept.index(index)
    grouped = len(kept) - 2  # the last conv and the pool form one official convMeanpool sequence
    official = f"{grouped}.{position - grouped}" if position >= grouped else str(position)
    return f"conv.{block}.conv.{official}.{param}"


def _conv_encoder_key(net: nn.Module, key: str) -> str:
    if key.startswith("head."):
        return _head_key(key)
    _, index, param = key.split(".", 2)
    return f"conv.{_kept_position(net.features, int(index))}.{param}"


# -- generators and discriminators ------------------------------------------------------------------
def _resnet_generator_key(net: nn.Module, key: str) -> str:
    return key.replace(".residual.", ".conv_block.", 1)


def _multiscale_key(net: nn.Module, key: str) -> str:
    _, scale, index, param = key.split(".", 3)
    name = "model" if net.num_D == 1 else f"model_{scale}"
    return f"{name}.{_kept_position(net.scales[int(scale)], int(index))}.{param}"


def _same_key(net: nn.Module, key: str) -> str:
    return key


def _pixel_key(net: nn.Module, key: str) -> str:
    return "net." + key.split(".", 1)[1]


def _rules() -> dict[type, Any]:
    from ganzoo.discriminators.multiscale import MultiscaleDiscriminator
    from ganzoo.discriminators.nlayer import NLayerDiscriminator
    from ganzoo.discriminators.pixel import PixelDiscriminator
    from ganzoo.encoders.conv import ConvEncoder
    from ganzoo.encoders.resnet import ResNetEncoder
    from ganzoo.generators.resnet import ResnetGenerator
    from ganzoo.generators.unet import UNetGenerator

    return {UNetGenerator: _unet_key, ResnetGenerator: _resnet_generator_key, NLayerDiscriminator: _same_key,
            PixelDiscriminator: _pixel_key, MultiscaleDiscriminator: _multiscale_key,
            ResNetEncoder: _resnet_encoder_key, ConvEncoder: _conv_encoder_key}


def official_key_map(net: nn.Module, name: str | None = None) -> dict[str, str]:
    """``{ganzoo key: official key}`` for every entry of ``net.state_dict()``."""
    rule = _rules().get(type(net))
    if rule is None:
        raise GanzooError(f"{type(net).__name__} has no official counterpart to import weights from",
                          hint="official checkpoints exist for U-Net/ResNet generators, PatchGAN/PixelGAN/"
                               "multiscale discriminators and the BicycleGAN resnet/conv encoders")
    _refuse_extensions(net, name or type(net).__name__)
    return {key: rule(net, key) for key in net.state_dict()}


def _refuse_extensions(net: nn.Module, name: str) -> None:
    """The official networks have neither spectral norm nor self-attention: weights saved without them
    describe another function (spectral norm divides each weight by its largest singular value; an
    attention block has no weights to come from), so such an import is refused rather than approximated."""
    from ganzoo.layers.attention import SelfAttention
    from ganzoo.layers.spectral import uses_spectral_norm

    is_discriminator = "discriminator" in type(net).__module__
    leave_out = (f"; or leave {name}'s file out: a discriminator may stay at its initial weights"
                 if is_discriminator else "")
    if uses_spectral_norm(net):
        raise GanzooError(
            f"network {name} has spectral_norm: true, but the official networks were trained without it: their "
            "weights, divided by their largest singular values, would be another network",
            hint=f"import into a recipe with spectral_norm: false for {name}{leave_out}")
    if any(isinstance(m, SelfAttention) for m in net.modules()):
        raise GanzooError(f"network {name} has self-attention blocks (attention: [...]), which the official "
                          "networks do not have", hint=f"import into a recipe with attention: [] for {name}{leave_out}")


def to_official(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s weights under the official key names (what the official code would have saved)."""
    mapping = official_key_map(net)
    return {mapping[key]: value for key, value in net.state_dict().items()}


def convert_official_state(net: nn.Module, official: dict[str, torch.Tensor], *, name: str = "network",
                           source: str = "the official file") -> dict[str, torch.Tensor]:
    """The official ``state_dict`` re-keyed for ``net``; errors name every key that does not fit."""
    official = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in official.items()}
    mapping = official_key_map(net, name)
    own = net.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for ours, theirs in mapping.items():
        if theirs not in official:
            raise CheckpointError(
                f"{source} ({name}): no official key {theirs!r} for ganzoo's {ours!r}",
                hint="the recipe's network differs from the one that was saved (depth, norm, z injection?)")
        value = official[theirs]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source} ({name}): {theirs!r} is not a tensor")
        if value.shape != own[ours].shape:
            raise CheckpointError(
                f"{source} ({name}): {theirs!r} has shape {tuple(value.shape)} but ganzoo's {ours!r} needs "
                f"{tuple(own[ours].shape)}",
                hint="a width (ngf/ndf/nef), channel count or nz differs between the recipe and the saved network")
        converted[ours] = value.to(own[ours].dtype)
    used = set(mapping.values())
    extra = [k for k in official if k not in used and not k.endswith(_STALE_NORM_BUFFERS)]
    if extra:
        raise CheckpointError(f"{source} ({name}): {len(extra)} official key(s) have no place in the recipe's "
                              f"network, e.g. {extra[0]!r}",
                              hint="the recipe's network is smaller than the saved one (depth, layers, scales?)")
    return converted


def read_official(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """An official ``.pth`` state dict, loaded safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    state = read_tensor_file(path, "official weight file")  # corrupt or refused: one line
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return dict(state)


def network_name(path: str | os.PathLike[str]) -> str:
    """The network a file holds, from the official file name (``latest_net_G_A.pth`` -> ``G_A``)."""
    match = _OFFICIAL_FILE.match(Path(path).name)
    if not match:
        raise GanzooError(f"cannot tell which network {Path(path).name} holds",
                          hint="official files are named <epoch>_net_<NAME>.pth, e.g. latest_net_G.pth; "
                               "name it so or pass NAME=PATH")
    return match.group("name")


def import_official(files: Sequence[str], recipe: Recipe, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Convert official network files into one ganzoo checkpoint at ``out``.

    Args:
        files: paths of ``*_net_<NAME>.pth`` files, or ``NAME=PATH`` to name the network explicitly.
        recipe: the resolved recipe describing the same architecture.
        out: the checkpoint file to write.

    Returns:
        A summary: ``{"out", "imported": {name: file}, "initialised": [names kept at init]}``.

    Generators and encoders must all be given; discriminators may be missing (the official
    releases often ship G only) and then keep their initial weights. The checkpoint holds networks
    only: no optimizer state, so it cannot resume training (``resumable: false``), while
    ``ganzoo.load``, ``ganzoo sample`` and ``ganzoo eval`` work.
    """
    from ganzoo.inference import build_model
    from ganzoo.training.checkpoint import FORMAT, VERSION, atomic_save

    named: dict[str, Path] = {}
    for item in files:
        name, sep, path = str(item).partition("=")
        name, path = (name, path) if sep else (network_name(item), str(item))
        if name in named:
            raise GanzooError(f"two files for network {name}: {named[name]} and {path}")
        named[name] = Path(path)
    states = {name: read_official(path) for name, path in named.items()}
    model = build_model(recipe, "cpu")
    networks = dict(model.networks.items())
    unknown = [n for n in named if n not in networks]
    if unknown:
        raise GanzooError(f"the recipe's {recipe.model.type} has no network {unknown[0]} "
                          f"(it has {', '.join(networks)})", hint="check --recipe or name files NAME=PATH")
    kinds = getattr(model, "network_kinds", {})
    missing = [n for n in networks if n not in named and kinds.get(n) != "discriminator"]
    if missing:
        raise GanzooError(f"no file for network {', '.join(missing)}: generators and encoders cannot be left "
                          "at their random initialisation")
    for name, path in named.items():
        state = convert_official_state(networks[name], states[name], name=name, source=str(path))
        networks[name].load_state_dict(state)
    payload = {
        "format": FORMAT, "version": VERSION, "step": 0, "recipe": recipe.to_dict(),
        "networks": {name: net.state_dict() for name, net in networks.items()},
        "resumable": False,
        "imported_from": {"files": {n: str(p) for n, p in named.items()},
                          "initialised": [n for n in networks if n not in named],
                          "note": "networks only (no optimizer state): load/sample/eval work, training cannot resume"},
    }
    atomic_save(payload, out)
    return {"out": str(out), "imported": {n: str(p) for n, p in named.items()},
            "initialised": [n for n in networks if n not in named]}


__all__ = ["convert_official_state", "import_official", "network_name", "official_key_map", "read_official",
           "to_official"]
