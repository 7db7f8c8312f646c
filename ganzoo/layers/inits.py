"""Weight initialisations (``init.type`` in a recipe), applied to every conv and linear layer.

As in the official code, conv/linear weights are drawn by the chosen scheme with ``gain``, biases
are zeroed, and batch-norm scales are drawn from N(1, gain).
"""
from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ganzoo.layers.spectral import restart_power_iteration, stored_weight
from ganzoo.registry import build, register


class _Initializer:
    """Apply ``self.weight_init`` to conv/linear weights of a network."""

    def __init__(self, gain: float = 0.02) -> None:
        self.gain = gain

    def weight_init(self, weight: nn.Parameter) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, net: nn.Module) -> nn.Module:
        for m in net.modules():
            # A spectrally normalised layer (spectral_norm: true) computes ``weight`` from a stored
            # original: that is what is drawn, and its singular vectors are then estimated afresh.
            weight = stored_weight(m) if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) else None
            if weight is not None:
                self.weight_init(weight)
                restart_power_iteration(m)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                nn.init.normal_(m.weight, 1.0, self.gain)
                nn.init.zeros_(m.bias)
        return net


@register("init", "normal")
class NormalInit(_Initializer):
    """Weights from N(0, gain) (pix2pix and CycleGAN default)."""

    def weight_init(self, weight: nn.Parameter) -> None:
        nn.init.normal_(weight, 0.0, self.gain)


@register("init", "xavier")
class XavierInit(_Initializer):
    """Xavier-normal weights scaled by gain (BicycleGAN default)."""

    def weight_init(self, weight: nn.Parameter) -> None:
        nn.init.xavier_normal_(weight, gain=self.gain)


@register("init", "kaiming")
class KaimingInit(_Initializer):
    """Kaiming-normal (fan-in) weights; gain is used only for batch-norm scales."""

    def weight_init(self, weight: nn.Parameter) -> None:
        nn.init.kaiming_normal_(weight, a=0, mode="fan_in")


@register("init", "orthogonal")
class OrthogonalInit(_Initializer):
    """Orthogonal weights scaled by gain."""

    def weight_init(self, weight: nn.Parameter) -> None:
        nn.init.orthogonal_(weight, gain=self.gain)


def init_weights(net: nn.Module, type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place with the registered scheme ``type``; returns ``net``."""
    initializer: Callable[[nn.Module], nn.Module] = build("init", type, gain=gain)
    return initializer(net)
