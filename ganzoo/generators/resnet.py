"""ResNet generators: CycleGAN's ``resnet_6blocks`` / ``resnet_9blocks`` (Johnson et al.'s style-transfer net).

Two stride-2 down-samplings, ``n_blocks`` residual blocks at a quarter of the resolution, and two
transposed-conv up-samplings, with 7x7 reflection-padded convolutions at both ends. Layers, biases
and norms follow pix2pix/CycleGAN's ``ResnetGenerator``, so parameter counts match. A latent code
z, when ``nz > 0``, is tiled over the image and concatenated to it (BicycleGAN's input injection).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganzoo.errors import ComponentError
from ganzoo.generators.unet import check_generator_inputs
from ganzoo.layers import conv_bias_for, norm_layer
from ganzoo.layers.attention import SelfAttention, check_positions
from ganzoo.layers.checks import check_choice
from ganzoo.layers.latent import check_z_grid, latent_channels, tile_latent
from ganzoo.registry import register, register_preset

PADDING_TYPES: tuple[str, ...] = ("reflect", "replicate", "zero")

# Official preset names and their number of residual blocks; also used to name the network in messages.
RESNET_PRESETS: dict[str, int] = {"resnet_6blocks": 6, "resnet_9blocks": 9}

DOWNSAMPLINGS = 2


def resnet_name(n_blocks: int) -> str:
    """The preset name of a ResNet generator with this many blocks, for messages."""
    for name, blocks in RESNET_PRESETS.items():
        if blocks == n_blocks:
            return name
    return f"resnet (n_blocks={n_blocks})"


def padded_conv3x3(channels: int, padding_type: str, bias: bool) -> list[nn.Module]:
    """A size-preserving 3x3 convolution with the requested border handling."""
    if padding_type == "zero":
        return [nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=bias)]
    pad = nn.ReflectionPad2d(1) if padding_type == "reflect" else nn.ReplicationPad2d(1)
    return [pad, nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=bias)]


class ResnetBlock(nn.Module):
    """Residual block: x + (conv3x3, norm, ReLU, [dropout], conv3x3, norm)(x)."""

    def __init__(self, channels: int, norm: str, use_dropout: bool, padding_type: str) -> None:
        super().__init__()
        norm_class = norm_layer(norm)
        bias = conv_bias_for(norm)
        layers: list[nn.Module] = [*padded_conv3x3(channels, padding_type, bias), norm_class(channels),
                                   nn.ReLU(inplace=True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*padded_conv3x3(channels, padding_type, bias), norm_class(channels)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


@register("generator", "resnet")
class ResnetGenerator(nn.Module):
    """ResNet generator (CycleGAN): 2 down-samplings, n residual blocks, 2 up-samplings; optional input z.

    Args:
        input_nc: channels of the input image.
        output_nc: channels of the output image.
        ngf: channels after the first convolution (x2 per down-sampling).
        norm: registered norm name (``batch``, ``instance``, ``none``...).
        use_dropout: dropout 0.5 inside every residual block.
        n_blocks: number of residual blocks.
        padding_type: border handling in the residual blocks: ``reflect``, ``replicate`` or ``zero``.
        nz: size of the latent code z concatenated to the input image; 0 means no z.
        z_grid: 1 for one global code; ``g > 1`` for a ``g x g`` grid of local codes (:mod:`ganzoo.layers.latent`).
        attention: self-attention blocks (SAGAN) among the residual blocks, at a quarter of the image side:
            ``b`` puts one after the first ``b`` residual blocks (0: before the first, ``n_blocks``: after
            the last); ``[]`` adds none.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = False, n_blocks: int = 6, padding_type: str = "reflect",
                 nz: int = 0, z_grid: int = 1, attention: tuple[int, ...] = ()) -> None:
        super().__init__()
        network = resnet_name(n_blocks)
        for argument, value, minimum in (("input_nc", input_nc, 1), ("output_nc", output_nc, 1),
                                         ("ngf", ngf, 1), ("n_blocks", n_blocks, 0), ("nz", nz, 0)):
            if not isinstance(value, int) or value < minimum:
                raise ComponentError(f"generator {network!r}: {argument} must be an integer >= {minimum}; "
                                     f"got {value!r}")
        check_choice(f"generator {network!r}", "padding_type", padding_type, PADDING_TYPES)
        attention_after = check_positions(f"generator {network!r}", attention, list(range(n_blocks + 1)), "block",
                                          f"0 is before the first residual block, {n_blocks} after the last")
        norm_class = norm_layer(norm)
        bias = conv_bias_for(norm)

        self.input_nc = input_nc
        self.output_nc = output_nc
        check_z_grid(f"generator {network!r}", nz, z_grid)
        self.nz = nz
        self.z_grid = z_grid
        self.n_blocks = n_blocks
        self.size_multiple = 2 ** DOWNSAMPLINGS
        self.network_name = network

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc + latent_channels(nz, z_grid), ngf, kernel_size=7, padding=0, bias=bias),
            norm_class(ngf),
            nn.ReLU(inplace=True),
        ]
        channels = ngf
        for _ in range(DOWNSAMPLINGS):
            layers += [nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=bias),
                       norm_class(2 * channels), nn.ReLU(inplace=True)]
            channels *= 2
        for block in range(n_blocks + 1):
            if block in attention_after:
                layers.append(SelfAttention(channels))
            if block < n_blocks:
                layers.append(ResnetBlock(channels, norm, use_dropout, padding_type))
        for _ in range(DOWNSAMPLINGS):
            # output_padding=1 makes each transposed conv exactly double the size
            layers += [nn.ConvTranspose2d(channels, channels // 2, kernel_size=3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       norm_class(channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Translate ``x`` (N, input_nc, H, W), guided by ``z`` (N, nz) when nz > 0, to (N, output_nc, H, W)."""
        check_generator_inputs(self.network_name, x, z, input_nc=self.input_nc, nz=self.nz,
                               size_multiple=self.size_multiple, downsamplings=DOWNSAMPLINGS)
        if z is not None:
            x = tile_latent(x, z, self.z_grid)
        return self.model(x)


for _name, _blocks in RESNET_PRESETS.items():
    register_preset(
        "generator", _name, ResnetGenerator, fixed={"n_blocks": _blocks},
        description=f"ResNet generator with {_blocks} residual blocks (CycleGAN)",
    )
