"""PixelGAN: a 1x1 PatchGAN judging every pixel on its own (pix2pix ``pixel``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ganzoo.discriminators.nlayer import check_discriminator_input, check_positive
from ganzoo.layers import activation, conv_bias_for, norm_layer
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import register


@register("discriminator", "pixel")
class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (PixelGAN): classifies every pixel as real or fake, judging colour not structure.

    Args:
        input_nc: channels of the judged image.
        ndf: filters of the first 1x1 conv (the second has twice as many).
        norm: registered norm name, applied after the second conv.
        spectral_norm: spectral normalisation on every conv (combinable with any norm).

    It takes no ``attention``: a PixelGAN judges every pixel on its own, which attention would undo.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, norm: str = "batch", spectral_norm: bool = False) -> None:
        super().__init__()
        check_positive("discriminator 'pixel'", input_nc=input_nc, ndf=ndf)
        self.input_nc = input_nc
        self.size_multiple = 1
        self.min_size = 1
        bias = conv_bias_for(norm)
        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1),
            activation("lrelu"),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, bias=bias),
            norm_layer(norm)(ndf * 2),
            activation("lrelu"),
            # pix2pix ties this bias to the norm too, although no norm follows; kept for the same parameters.
            nn.Conv2d(ndf * 2, 1, kernel_size=1, bias=bias),
        )
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score map [N, 1, H, W] for ``x`` [N, input_nc, H, W]: one raw score per pixel."""
        check_discriminator_input(self, x, self.min_size)
        return self.model(x)
