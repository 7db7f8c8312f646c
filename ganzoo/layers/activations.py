"""Non-linearities, registered under the official ``nl`` option names."""
from __future__ import annotations

import torch.nn as nn

from ganzoo.registry import build, register


@register("activation", "relu")
class ReLU(nn.ReLU):
    """Rectified linear unit (in place)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__(inplace=inplace)


@register("activation", "lrelu")
class LeakyReLU(nn.LeakyReLU):
    """Leaky ReLU with slope 0.2, as in every official discriminator and encoder."""

    def __init__(self, negative_slope: float = 0.2, inplace: bool = True) -> None:
        super().__init__(negative_slope=negative_slope, inplace=inplace)


@register("activation", "elu")
class ELU(nn.ELU):
    """Exponential linear unit (in place)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__(inplace=inplace)


def activation(name: str, **kwargs: object) -> nn.Module:
    """A new activation module called ``name``."""
    return build("activation", name, **kwargs)
