"""Normalisation layers, registered by the names the official code uses.

Each class takes the number of channels and says, through ``conv_bias``, whether the convolution
before it needs a bias: a norm with a learnable shift (batch norm) makes the bias redundant, one
without (instance norm without affine parameters, no norm) does not. The official networks follow
the same rule, which is why the parameter counts match.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganzoo.registry import get_component, register


@register("norm", "batch")
class BatchNorm(nn.BatchNorm2d):
    """Batch norm with learnable affine parameters and running statistics (pix2pix default)."""

    conv_bias = False

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=True, track_running_stats=True)


@register("norm", "syncbatch")
class SyncBatchNorm(nn.SyncBatchNorm):
    """Batch norm whose statistics are synchronised across processes (multi-GPU training)."""

    conv_bias = False

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=True, track_running_stats=True)


@register("norm", "instance")
class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm without affine parameters or running statistics (CycleGAN/BicycleGAN default)."""

    conv_bias = True

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False, track_running_stats=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # torch's own instance norm, step by step (one batch norm over N*C channels), except that the
        # result is not returned as a view: after a view, the in-place activation that follows costs
        # autograd a zero-filled buffer and extra full copies in the backward (docs/performance.md).
        # Traced (export), the sizes below would be frozen into the graph: torch's own op there.
        if input.dim() != 4 or torch.jit.is_tracing():
            return super().forward(input)
        n, c, h, w = input.shape
        out = F.batch_norm(input.reshape(1, n * c, h, w), None, None, training=True, eps=self.eps)
        return torch.ops.aten._unsafe_view(out, (n, c, h, w))


@register("norm", "none")
class NoNorm(nn.Identity):
    """No normalisation."""

    conv_bias = True

    def __init__(self, num_features: int) -> None:
        super().__init__()


def norm_layer(name: str) -> type[nn.Module]:
    """The registered norm class called ``name`` (an error listing close names otherwise)."""
    return get_component("norm", name).factory


def conv_bias_for(name: str) -> bool:
    """Whether a convolution followed by norm ``name`` should have a bias."""
    return bool(getattr(norm_layer(name), "conv_bias", True))
