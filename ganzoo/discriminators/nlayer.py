"""N-layer PatchGAN discriminator (pix2pix/CycleGAN ``basic``, BicycleGAN ``basic_128``/``basic_256``).

Each output value classifies one overlapping patch of the input as real or fake; with three
layers a patch is 70x70 pixels. pix2pix's NLayerDiscriminator and BicycleGAN's D_NLayers have
the same structure, so both sets of presets share this class.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ganzoo.layers import activation, conv_bias_for, norm_layer
from ganzoo.layers.attention import SelfAttention, check_positions
from ganzoo.layers.checks import check_image_batch, check_min_size, check_positive
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import register, register_preset

MAX_WIDTH_MULTIPLIER = 8


def check_discriminator_input(net: nn.Module, x: torch.Tensor, min_size: int,
                              fix: str = "fewer discriminator layers (n_layers)") -> None:
    """Raise a ComponentError when ``x`` is not an image batch ``net`` can judge."""
    name = type(net).__name__
    check_image_batch(name, x, net.input_nc, "discriminator")
    check_min_size(name, x, min_size, "to produce one patch score", fix)


def patchgan_min_size(n_layers: int) -> int:
    """Smallest input side giving a 1x1 score map: n_layers halvings, then two convs that each shrink by 1."""
    return 3 * 2**n_layers


def smallest_power_of_two_at_least(size: int) -> int:
    """The size_multiple of a network with no stride constraint but a minimum input size."""
    return 1 << max(size - 1, 0).bit_length()


def patchgan_layers(input_nc: int, ndf: int, n_layers: int, norm: str,
                    always_bias: bool = False, attention: tuple[int, ...] | list[int] = ()) -> list[nn.Module]:
    """The conv stack of a PatchGAN: ``n_layers`` stride-2 convs, one stride-1 conv, a 1-channel score conv.

    Widths double from ``ndf`` up to ``8 * ndf``. Convs followed by a norm drop their bias when the
    norm has its own shift, unless ``always_bias`` (BicycleGAN's multiscale D keeps every bias).
    ``attention`` lists layers (0: the first conv, ``n``: the n-th conv block after it) after whose
    activation a self-attention block sits (:class:`~ganzoo.layers.attention.SelfAttention`).
    """
    norm_class = norm_layer(norm)
    bias = always_bias or conv_bias_for(norm)
    after = set(attention)
    layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), activation("lrelu")]
    if 0 in after:
        layers.append(SelfAttention(ndf))
    channels = ndf
    for n in range(1, n_layers + 1):
        out_channels = ndf * min(2**n, MAX_WIDTH_MULTIPLIER)
        # The last of these keeps the resolution: it widens the receptive field without halving.
        stride = 2 if n < n_layers else 1
        layers += [
            nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1, bias=bias),
            norm_class(out_channels),
            activation("lrelu"),
        ]
        if n in after:
            layers.append(SelfAttention(out_channels))
        channels = out_channels
    layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
    return layers


def check_patchgan_attention(network: str, attention: Any, n_layers: int) -> list[int]:
    """The layers of a PatchGAN's ``attention`` argument (0..n_layers), checked."""
    return check_positions(network, attention, list(range(n_layers + 1)), "layer",
                           f"0 is the first conv, {n_layers} the last conv block before the score conv")


@register("discriminator", "nlayer")
class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: n_layers stride-2 convs giving a map of real/fake patch scores.

    Args:
        input_nc: channels of the judged image (pix2pix: input and output concatenated).
        ndf: filters of the first conv; later convs double it, up to 8x.
        n_layers: number of stride-2 convs (3: 70x70 patches).
        norm: registered norm name, applied after every conv but the first and the last.
        spectral_norm: spectral normalisation on every conv (combinable with any norm).
        attention: layers followed by a self-attention block (SAGAN): 0 is the first conv, ``n_layers``
            the last conv block before the score conv; ``[]`` adds none.

    Attributes ``size_multiple`` (every multiple of it works) and ``min_size`` (smallest input side).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 spectral_norm: bool = False, attention: tuple[int, ...] = ()) -> None:
        super().__init__()
        check_positive("discriminator 'nlayer'", input_nc=input_nc, ndf=ndf, n_layers=n_layers)
        layers = check_patchgan_attention("discriminator 'nlayer'", attention, n_layers)
        self.input_nc = input_nc
        self.min_size = patchgan_min_size(n_layers)
        self.size_multiple = smallest_power_of_two_at_least(self.min_size)
        self.model = nn.Sequential(*patchgan_layers(input_nc, ndf, n_layers, norm, attention=layers))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score map [N, 1, H', W'] for ``x`` [N, input_nc, H, W]: one raw score (no sigmoid) per patch."""
        check_discriminator_input(self, x, self.min_size)
        return self.model(x)


register_preset("discriminator", "basic", NLayerDiscriminator, fixed={"n_layers": 3},
                description="70x70 PatchGAN (3 layers), the pix2pix/CycleGAN default discriminator.")
register_preset("discriminator", "basic_128", NLayerDiscriminator, fixed={"n_layers": 2},
                defaults={"norm": "instance"},
                description="Single-scale PatchGAN with 2 layers for 128 px images (BicycleGAN basic_128).")
register_preset("discriminator", "basic_256", NLayerDiscriminator, fixed={"n_layers": 3},
                defaults={"norm": "instance"},
                description="Single-scale PatchGAN with 3 layers for 256 px images (BicycleGAN basic_256).")
