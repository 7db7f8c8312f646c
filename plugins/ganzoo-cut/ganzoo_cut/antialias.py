"""The anti-aliased networks CUT trains by default: blurred down- and up-sampling (Zhang, 2019).

The official CUT code builds its ResNet generator and PatchGAN with ``no_antialias=False`` and
``no_antialias_up=False`` unless told otherwise: every stride-2 convolution becomes a stride-1
convolution followed by a fixed binomial blur sampled at stride 2, and every transposed convolution a
fixed binomial up-sampling followed by a 3x3 convolution. The fixed filters are buffers, not
parameters, so the parameter counts are those of ganzoo's ``resnet_9blocks`` and ``basic``; the
layer order differs, and with it what the official ``--nce_layers`` indices point at
(:mod:`ganzoo_cut.taps`).

Registered here:

- ``generator: resnet_antialias`` and its presets ``resnet_9blocks_antialias``,
  ``resnet_6blocks_antialias`` (``antialias`` / ``antialias_up`` switch each half back to ganzoo's
  strided layers, the official ``--no_antialias`` / ``--no_antialias_up``);
- ``discriminator: nlayer_antialias`` and its preset ``basic_antialias`` (3 layers).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganzoo import register
from ganzoo.discriminators.nlayer import MAX_WIDTH_MULTIPLIER, check_discriminator_input, smallest_power_of_two_at_least
from ganzoo.errors import ComponentError
from ganzoo.generators.resnet import PADDING_TYPES, ResnetBlock
from ganzoo.generators.unet import check_generator_inputs
from ganzoo.layers import activation, conv_bias_for, norm_layer
from ganzoo.layers.checks import check_choice, check_positive
from ganzoo.registry import register_preset

DOWNSAMPLINGS = 2


def binomial_kernel(taps: int) -> torch.Tensor:
    """The 2-D binomial filter of ``taps`` x ``taps`` (row of Pascal's triangle, outer product), summing to 1."""
    row = torch.tensor([float(math.comb(taps - 1, k)) for k in range(taps)])
    kernel = torch.outer(row, row)
    return kernel / kernel.sum()


class BlurDownsample(nn.Module):
    """Halve the resolution without aliasing: reflect-pad by 1, 3x3 binomial blur per channel, keep every 2nd pixel.

    An H x W input gives ceil(H/2) x ceil(W/2). No parameters: the filter is a non-persistent buffer.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", binomial_kernel(3).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(padded, self.kernel.to(x.dtype), stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """Double the resolution: replicate-pad by 1, then a 4x4 binomial transposed filter at stride 2 per channel.

    The filter is [1, 3, 3, 1] x [1, 3, 3, 1] / 16: each 2x2 cell of the output mixes the nearest input
    pixels 3:1 per axis. The border rows the padding adds are cut, so H x W gives exactly 2H x 2W.
    No parameters.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", (binomial_kernel(4) * 4).expand(channels, 1, 4, 4).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        # (H + 2) padded rows at stride 2 with a 4-tap filter and 2 rows cropped by `padding`: 2H + 2 rows,
        # of which the first and the last belong to the padding.
        up = F.conv_transpose2d(padded, self.kernel.to(x.dtype), stride=2, padding=2, groups=self.channels)
        return up[:, :, 1:-1, 1:-1]


@register("generator", "resnet_antialias")
class AntialiasResnetGenerator(nn.Module):
    """ResNet generator with anti-aliased down/up-sampling (CUT's default); the parameters of ganzoo's ``resnet``.

    Args:
        input_nc, output_nc, ngf, norm, use_dropout, n_blocks, padding_type: as ganzoo's ``resnet``.
        antialias: each down-sampling is a stride-1 3x3 conv, norm, ReLU, then :class:`BlurDownsample`
            (False: a stride-2 conv, the official ``--no_antialias``).
        antialias_up: each up-sampling is :class:`BlurUpsample`, then a 3x3 conv, norm, ReLU (False: a
            transposed conv, the official ``--no_antialias_up``).

    ``self.model`` is one ``nn.Sequential`` laid out as the official ``ResnetGenerator.model``, so
    the official layer indices (``--nce_layers 0,4,8,12,16``) name the same layers here.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "instance",
                 use_dropout: bool = False, n_blocks: int = 9, padding_type: str = "reflect",
                 antialias: bool = True, antialias_up: bool = True) -> None:
        super().__init__()
        name = f"resnet_{n_blocks}blocks_antialias"
        check_positive(f"generator {name!r}", input_nc=input_nc, output_nc=output_nc, ngf=ngf)
        if not isinstance(n_blocks, int) or isinstance(n_blocks, bool) or n_blocks < 0:
            raise ComponentError(f"generator {name!r}: n_blocks must be an integer >= 0; got {n_blocks!r}")
        check_choice(f"generator {name!r}", "padding_type", padding_type, PADDING_TYPES)
        norm_class = norm_layer(norm)
        bias = conv_bias_for(norm)
        self.input_nc, self.output_nc, self.nz = input_nc, output_nc, 0
        self.n_blocks = n_blocks
        self.antialias, self.antialias_up = bool(antialias), bool(antialias_up)
        self.size_multiple = 2 ** DOWNSAMPLINGS
        self.network_name = name

        layers: list[nn.Module] = [nn.ReflectionPad2d(3),
                                   nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias),
                                   norm_class(ngf), nn.ReLU(inplace=True)]
        channels = ngf
        for _ in range(DOWNSAMPLINGS):
            stride = 1 if antialias else 2
            layers += [nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=stride, padding=1, bias=bias),
                       norm_class(2 * channels), nn.ReLU(inplace=True)]
            if antialias:
                layers.append(BlurDownsample(2 * channels))
            channels *= 2
        layers += [ResnetBlock(channels, norm, use_dropout, padding_type) for _ in range(n_blocks)]
        for _ in range(DOWNSAMPLINGS):
            if antialias_up:
                layers += [BlurUpsample(channels),
                           nn.Conv2d(channels, channels // 2, kernel_size=3, stride=1, padding=1, bias=bias)]
            else:
                layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=3, stride=2, padding=1,
                                                 output_padding=1, bias=bias))
            layers += [norm_class(channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Translate ``x`` (N, input_nc, H, W) to (N, output_nc, H, W); H and W multiples of 4."""
        check_generator_inputs(self.network_name, x, z, input_nc=self.input_nc, nz=0,
                               size_multiple=self.size_multiple, downsamplings=DOWNSAMPLINGS)
        return self.model(x)


for _blocks in (9, 6):
    register_preset("generator", f"resnet_{_blocks}blocks_antialias", AntialiasResnetGenerator,
                    fixed={"n_blocks": _blocks},
                    description=f"ResNet generator, {_blocks} blocks, anti-aliased down/up-sampling (CUT default)")


def _antialias_patchgan_min_size(n_layers: int) -> int:
    """Smallest input side that still gives a 1x1 score map."""
    side = 1
    while True:
        s = side
        for _ in range(n_layers):  # 4x4 stride-1 conv (pad 1): -1; blur at stride 2: ceil(s / 2)
            s = -(-(s - 1) // 2) if s > 2 else 0
        if s - 2 >= 1:  # the two last 4x4 stride-1 convs
            return side
        side += 1


@register("discriminator", "nlayer_antialias")
class AntialiasNLayerDiscriminator(nn.Module):
    """PatchGAN whose down-samplings are a stride-1 conv then a binomial blur at stride 2 (CUT's default D).

    Args:
        input_nc, ndf, n_layers, norm: as ganzoo's ``nlayer``; the same parameters and the same score-map size.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        check_positive("discriminator 'nlayer_antialias'", input_nc=input_nc, ndf=ndf, n_layers=n_layers)
        norm_class = norm_layer(norm)
        bias = conv_bias_for(norm)
        self.input_nc = input_nc
        self.min_size = _antialias_patchgan_min_size(n_layers)
        self.size_multiple = smallest_power_of_two_at_least(self.min_size)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=1, padding=1),
                                   activation("lrelu"), BlurDownsample(ndf)]
        channels = ndf
        for n in range(1, n_layers + 1):
            out_channels = ndf * min(2**n, MAX_WIDTH_MULTIPLIER)
            layers += [nn.Conv2d(channels, out_channels, kernel_size=4, stride=1, padding=1, bias=bias),
                       norm_class(out_channels), activation("lrelu")]
            if n < n_layers:  # the last of these keeps the resolution, as in the plain PatchGAN
                layers.append(BlurDownsample(out_channels))
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score map [N, 1, H', W'] (raw scores, no sigmoid), the size of the plain PatchGAN's."""
        check_discriminator_input(self, x, self.min_size)
        return self.model(x)


register_preset("discriminator", "basic_antialias", AntialiasNLayerDiscriminator, fixed={"n_layers": 3},
                description="70x70 PatchGAN (3 layers) with anti-aliased down-sampling (CUT default)")
