"""Multiscale PatchGAN (BicycleGAN ``basic_128_multi`` / ``basic_256_multi``).

``num_D`` PatchGANs judge the image at successively halved resolutions, so the coarse ones see
global structure and the fine one texture. Each coarser discriminator has half the filters of
the previous one, as in the official D_NLayersMulti.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganzoo.discriminators.nlayer import (
    check_discriminator_input,
    check_patchgan_attention,
    check_positive,
    patchgan_layers,
    patchgan_min_size,
    smallest_power_of_two_at_least,
)
from ganzoo.errors import ComponentError
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import register, register_preset


def halved_size(size: int) -> int:
    """Side length after the 3x3, stride-2, padding-1 average pool (padding excluded): ceil(size / 2)."""
    return (size + 1) // 2


@register("discriminator", "multiscale")
class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs applied to the image and its 2x, 4x... downsampled copies; returns one map per scale.

    Args:
        input_nc: channels of the judged image.
        ndf: filters of the first conv of the full-resolution discriminator; the one at scale
            ``i`` uses ``round(ndf / 2**i)``.
        n_layers: stride-2 convs in each discriminator.
        norm: registered norm name.
        num_D: number of scales.
        spectral_norm: spectral normalisation on every conv (combinable with any norm).
        attention: layers of every scale's PatchGAN followed by a self-attention block (SAGAN), as for
            ``nlayer``: 0 is the first conv, ``n_layers`` the last conv block; ``[]`` adds none.

    Attributes ``size_multiple`` (every multiple of it works) and ``min_size`` (smallest input side).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 num_D: int = 2, spectral_norm: bool = False, attention: tuple[int, ...] = ()) -> None:
        super().__init__()
        check_positive("discriminator 'multiscale'", input_nc=input_nc, ndf=ndf, n_layers=n_layers, num_D=num_D)
        layers = check_patchgan_attention("discriminator 'multiscale'", attention, n_layers)
        widths = [int(round(ndf / 2**i)) for i in range(num_D)]
        if widths[-1] < 1:
            raise ComponentError(
                f"discriminator 'multiscale': ndf={ndf} is too small for num_D={num_D} "
                f"(scale {num_D - 1} would have {ndf}/2**{num_D - 1} < 1 filters)",
                hint=f"use ndf >= {2 ** (num_D - 1)} or fewer scales",
            )
        self.input_nc = input_nc
        self.num_D = num_D
        # Smallest full-resolution side whose coarsest copy is still large enough for one score.
        min_size = patchgan_min_size(n_layers)
        for _ in range(num_D - 1):
            min_size = 2 * min_size - 1
        self.min_size = min_size
        self.size_multiple = smallest_power_of_two_at_least(min_size)
        # The official multiscale D keeps every conv bias, even before batch norm: same parameters.
        self.scales = nn.ModuleList(
            nn.Sequential(*patchgan_layers(input_nc, width, n_layers, norm, always_bias=True, attention=layers))
            for width in widths
        )
        self.downsample = nn.AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Score maps for ``x`` [N, input_nc, H, W], finest first: ``num_D`` tensors [N, 1, H_i, W_i]."""
        check_discriminator_input(self, x, self.min_size, fix="fewer layers (n_layers) or scales (num_D)")
        outputs = []
        for i, discriminator in enumerate(self.scales):
            if i > 0:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs


register_preset("discriminator", "basic_128_multi", MultiscaleDiscriminator, fixed={"n_layers": 2},
                description="Multiscale PatchGAN, 2 layers per scale, for 128 px images (BicycleGAN basic_128_multi).")
register_preset("discriminator", "basic_256_multi", MultiscaleDiscriminator, fixed={"n_layers": 3},
                description="Multiscale PatchGAN with 3 layers per scale for 256 px images (BicycleGAN default).")
