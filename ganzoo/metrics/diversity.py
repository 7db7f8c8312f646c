"""Diversity as in the BicycleGAN paper: LPIPS between consecutive samples of one input.

For each input, K random codes give K outputs; the LPIPS distance of the K - 1 consecutive pairs
``(y_k, y_k+1)`` is averaged over pairs and inputs (the paper: 100 inputs, 20 codes, 19 pairs).
The score depends on the LPIPS version: the paper used v0.0; v0.1 gives about twice the number.
Both are recorded with the score.

LPIPS is the ``lpips`` package (its linear heads ship with it). Its backbone (AlexNet, VGG16 or
SqueezeNet ImageNet weights from torchvision) is never downloaded here: it is read from the torch
hub cache (``<torch.hub.get_dir()>/checkpoints/<file>``), from ``backbone_weights=PATH`` or from
the ``GANZOO_LPIPS_BACKBONE`` environment variable; otherwise an error says what to download and where.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.metrics.base import EvalContext, Metric, MetricResult, MetricUnavailable, find_weight_file
from ganzoo.metrics.weights import read_state_dict, wrong_weights
from ganzoo.registry import register

#: LPIPS backbone -> the torchvision ImageNet weight file it needs.
BACKBONE_FILES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
BACKBONE_URL = "https://download.pytorch.org/models/{file}"
LPIPS_VERSIONS: tuple[str, ...] = ("0.0", "0.1")
ENV_BACKBONE = "GANZOO_LPIPS_BACKBONE"

#: A distance between two image batches (N, C, H, W) in [-1, 1], one value per pair: (N,).
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def find_backbone_weights(net: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The local file of an LPIPS backbone's ImageNet weights; a MetricUnavailable saying how to get it."""
    if net not in BACKBONE_FILES:
        raise MetricUnavailable(f"unknown LPIPS network {net!r}; choose one of {', '.join(BACKBONE_FILES)}")
    filename = BACKBONE_FILES[net]
    return find_weight_file(f"LPIPS ({net})", filename, path=path, env=ENV_BACKBONE,
                            url=BACKBONE_URL.format(file=filename), option="--lpips-weights")


def load_lpips(net: str = "alex", version: str = "0.0", backbone_weights: str | os.PathLike[str] | None = None,
               *, random_backbone: bool = False) -> nn.Module:
    """An ``lpips.LPIPS`` module in eval mode, its backbone read from a local file.

    ``random_backbone=True`` keeps the backbone randomly initialised: only for tests of metric
    properties (the distance of identical images is 0 whatever the backbone), never for scores.
    """
    if version not in LPIPS_VERSIONS:
        raise MetricUnavailable(f"unknown LPIPS version {version!r}; choose one of {', '.join(LPIPS_VERSIONS)}")
    try:
        import lpips
    except ImportError:
        raise MetricUnavailable("diversity needs the 'lpips' package", hint="pip install lpips") from None
    weights = None if random_backbone else find_backbone_weights(net, backbone_weights)
    # pnet_rand=True: the lpips package would otherwise ask torchvision to download the backbone.
    with warnings.catch_warnings():  # torchvision's deprecation notes about lpips' `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version=version, pnet_rand=True, verbose=False)
    if weights is not None:
        expected = f"the {net} ImageNet weights LPIPS needs (torchvision's {BACKBONE_FILES[net]})"
        own = model.net.state_dict()
        # lpips slices torchvision's `features` into slice1..5 but keeps each layer's index.
        names = {key: f"features.{key.split('.', 1)[1]}" for key in own}
        state = read_state_dict(weights, expected, required=names.values())
        for key, name in names.items():
            if state[name].shape != own[key].shape:
                raise wrong_weights(weights, expected, f"{name} has shape {tuple(state[name].shape)}, "
                                    f"not {tuple(own[key].shape)}")
        model.net.load_state_dict({key: state[name] for key, name in names.items()})
    return model.eval().requires_grad_(False)


def lpips_distance(module: nn.Module) -> Distance:
    """A :data:`Distance` from an ``lpips.LPIPS`` module (inputs in [-1, 1], grey images repeated to RGB)."""

    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        device = next(module.parameters()).device
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        with torch.no_grad():
            return module(x.to(device), y.to(device)).reshape(-1).cpu()

    return distance


def consecutive_pair_distance(samples: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Distances of consecutive samples ``(y_k, y_k+1)`` of every input: (N, K - 1) for samples (N, K, C, H, W)."""
    n, k = samples.shape[:2]
    if k < 2:
        raise MetricUnavailable("diversity needs at least 2 samples per input (--num-z >= 2)")
    rows = [distance(s[:-1], s[1:]) for s in samples]
    return torch.stack(rows).reshape(n, k - 1)


@register("metric", "diversity")
class Diversity(Metric):
    """LPIPS between consecutive samples of one input, averaged (BicycleGAN paper protocol).

    Args:
        net: LPIPS backbone: ``alex`` (the paper's), ``vgg`` or ``squeeze``.
        version: LPIPS linear-head version: ``0.0`` (the paper's) or ``0.1`` (about twice the value).
        backbone_weights: local file of the backbone's ImageNet weights (default: the torch hub cache).
        distance: a ready distance function (for other perceptual distances, or tests); replaces LPIPS.
    """

    def __init__(self, net: str = "alex", version: str = "0.0", backbone_weights: str | None = None,
                 distance: Distance | None = None) -> None:
        self.net = net
        self.version = version
        self.backbone_weights = backbone_weights
        self.distance = distance

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if ctx.nz == 0:
            return "the model has no latent code (one output per input)"
        if ctx.num_z < 2:
            return "it needs at least 2 samples per input"
        return None

    def describe(self) -> dict[str, Any]:
        if self.distance is not None:
            return {"distance": getattr(self.distance, "__name__", "custom")}
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("lpips")
        except PackageNotFoundError:
            package = "unknown"
        return {"lpips_net": self.net, "lpips_version": self.version, "lpips_package": package}

    def compute(self, ctx: EvalContext) -> MetricResult:
        distance = self.distance
        if distance is None:
            module = load_lpips(self.net, self.version, self.backbone_weights).to(ctx.device)
            distance = lpips_distance(module)
        pairs = consecutive_pair_distance(ctx.float_samples(), distance)
        info = {**self.describe(), "inputs": ctx.num_inputs, "samples_per_input": ctx.num_z,
                "pairs": int(pairs.numel()), "pairing": "consecutive samples (k, k+1)",
                "images": "samples after uint8 quantisation, in [-1,1]"}
        return MetricResult({"lpips": pairs.mean().item(), "lpips_std": pairs.std().item() if pairs.numel() > 1
                             else 0.0}, info)


__all__ = ["BACKBONE_FILES", "Distance", "Diversity", "consecutive_pair_distance", "find_backbone_weights",
           "load_lpips", "lpips_distance"]
