"""U-Net generators of any depth: pix2pix's ``unet_128``/``unet_256`` and BicycleGAN's z-injecting variants.

Level 0 is the outermost level (full resolution); level ``num_downs - 1`` is the innermost one
(the bottleneck). Every level halves the resolution on the way down and doubles it on the way up,
and every level but the outermost concatenates a skip connection to the up-path output.

The layers, biases, norms and dropout follow the official code, so that parameter counts match
(and official checkpoints map onto these layers one to one):

- pix2pix ``UnetGenerator`` when ``nz=0``;
- BicycleGAN ``G_Unet_add_input`` (``inject="input"``) and ``G_Unet_add_all`` (``inject="all"``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganzoo.errors import ComponentError
from ganzoo.layers import activation, conv_bias_for, norm_layer
from ganzoo.layers.attention import SelfAttention, check_positions
from ganzoo.layers.checks import check_choice, check_image_batch
from ganzoo.layers.latent import check_z_grid, latent_channels, tile_latent
from ganzoo.registry import register, register_preset

UPSAMPLE_MODES: tuple[str, ...] = ("basic", "bilinear", "nearest")
INJECT_MODES: tuple[str, ...] = ("input", "all")

# Official preset names and their depths; also used to name the network in error messages.
UNET_PRESETS: dict[str, int] = {"unet_128": 7, "unet_256": 8}

# Channel growth stops at ngf * 8, as in the official networks.
MAX_CHANNEL_MULTIPLIER = 8

# The official networks put dropout only on the deep levels whose width is capped at ngf * 8.
FIRST_DROPOUT_LEVEL = 4


def check_generator_inputs(network: str, x: torch.Tensor, z: torch.Tensor | None, *, input_nc: int, nz: int,
                           size_multiple: int, downsamplings: int) -> None:
    """Raise a ComponentError when ``x`` or ``z`` do not fit a generator, before any layer fails obscurely."""
    check_image_batch(network, x, input_nc, "generator")
    height, width = x.shape[-2:]
    if height % size_multiple or width % size_multiple:
        raise ComponentError(
            f"{network} needs height and width divisible by {size_multiple} "
            f"({downsamplings} down-samplings); got {height}x{width}",
            hint=f"resize or crop the images to a multiple of {size_multiple}",
        )
    if nz == 0:
        if z is not None:
            raise ComponentError(f"{network} was built with nz=0 (no latent code) but was given z",
                                 hint="build it with nz=<size of z> or call it without z")
        return
    if z is None:
        raise ComponentError(f"{network} was built with nz={nz} and needs a latent code z of shape (N, {nz})")
    if z.dim() != 2 or z.size(0) != x.size(0) or z.size(1) != nz:
        raise ComponentError(
            f"{network} needs z of shape ({x.size(0)}, {nz}) for {x.size(0)} images; got shape {tuple(z.shape)}"
        )


def upsampling_layers(in_nc: int, out_nc: int, mode: str, bias: bool) -> list[nn.Module]:
    """Layers doubling the resolution: a 4x4 transposed conv ("basic") or resize + 3x3 conv."""
    if mode == "basic":
        return [nn.ConvTranspose2d(in_nc, out_nc, kernel_size=4, stride=2, padding=1, bias=bias)]
    # Resize-then-convolve avoids the checkerboard artefacts of transposed convolutions.
    return [
        nn.Upsample(scale_factor=2, mode=mode),
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_nc, out_nc, kernel_size=3, stride=1, padding=0, bias=bias),
    ]


def unet_name(num_downs: int) -> str:
    """The preset name of a U-Net of this depth, for messages."""
    for name, depth in UNET_PRESETS.items():
        if depth == num_downs:
            return name
    return f"unet (num_downs={num_downs})"


@register("generator", "unet")
class UNetGenerator(nn.Module):
    """U-Net generator with skip connections, any depth; optional latent z at the input or every level.

    Args:
        input_nc: channels of the input image.
        output_nc: channels of the output image.
        nz: size of the latent code z; 0 means no z (pix2pix).
        num_downs: number of 2x down-samplings; height and width must be multiples of ``2**num_downs``.
        ngf: channels after the first convolution (doubled per level, capped at ``8 * ngf``).
        norm: registered norm name (``batch``, ``instance``, ``none``...).
        nl: registered activation name used on the up path (the down path uses LeakyReLU 0.2).
        use_dropout: dropout 0.5 on the deep ``8 * ngf`` levels of the up path.
        upsample: ``basic`` (4x4 transposed conv), ``bilinear`` or ``nearest`` (resize + 3x3 conv).
        inject: where z is concatenated: ``input`` (to the image) or ``all`` (to every level's input).
        inject_from: with ``inject="all"``, the outermost level z joins: 0 (official) concatenates it to
            the image too; ``k > 0`` leaves the ``k`` outermost convolutions without z, so where z
            changes colour is decided at 1/2**k of the image side and up-sampled, not pixel by pixel.
        z_grid: 1 for the paper's global code; ``g > 1`` reads z as ``nz / g**2`` channels on a ``g x g``
            grid of local codes (:mod:`ganzoo.layers.latent`); the encoder must use the same ``z_grid``.
        attention: levels (1 .. num_downs - 1) whose up-path output goes through a self-attention
            block (SAGAN) before it meets the skip connection: level ``l`` works at 1/2**l of the image
            side with ``ngf * min(2**(l - 1), 8)`` channels; ``[]`` adds none.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, nz: int = 0, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", nl: str = "relu", use_dropout: bool = False, upsample: str = "basic",
                 inject: str = "input", inject_from: int = 0, z_grid: int = 1,
                 attention: tuple[int, ...] = ()) -> None:
        super().__init__()
        network = unet_name(num_downs)
        if not isinstance(num_downs, int) or num_downs < 2:
            raise ComponentError(f"generator 'unet': num_downs must be an integer >= 2; got {num_downs!r}")
        for argument, value, minimum in (("input_nc", input_nc, 1), ("output_nc", output_nc, 1),
                                         ("ngf", ngf, 1), ("nz", nz, 0)):
            if not isinstance(value, int) or value < minimum:
                raise ComponentError(f"generator {network!r}: {argument} must be an integer >= {minimum}; "
                                     f"got {value!r}")
        check_choice(f"generator {network!r}", "upsample", upsample, UPSAMPLE_MODES)
        check_choice(f"generator {network!r}", "inject", inject, INJECT_MODES)
        check_z_grid(f"generator {network!r}", nz, z_grid)
        if not isinstance(inject_from, int) or isinstance(inject_from, bool) or not 0 <= inject_from < num_downs:
            raise ComponentError(f"generator {network!r}: inject_from must be a level from 0 (the image) to "
                                 f"{num_downs - 1} (the bottleneck's input); got {inject_from!r}")
        if inject_from and inject != "all":
            raise ComponentError(f"generator {network!r}: inject_from={inject_from} needs inject='all' "
                                 f"(with inject='{inject}' z joins the image only)",
                                 hint="set inject: all, or leave inject_from out")
        attention_levels = check_positions(
            f"generator {network!r}", attention, list(range(1, num_downs)), "level",
            f"level 1 is the up path at half the image side, {num_downs - 1} the one just above the bottleneck")
        norm_class = norm_layer(norm)
        activation(nl)  # fail now, naming the argument's registry, rather than in the first up block

        self.input_nc = input_nc
        self.output_nc = output_nc
        self.nz = nz
        self.num_downs = num_downs
        self.inject = inject
        self.inject_from = inject_from
        self.z_grid = z_grid
        self.size_multiple = 2 ** num_downs
        self.network_name = network
        # pix2pix concatenates [skip, up-path]; BicycleGAN (the z-using networks) [up-path, skip].
        self.skip_first = nz == 0
        # the levels whose down-conv reads z beside its input
        if nz == 0:
            self.z_levels: set[int] = set()
        else:
            self.z_levels = set(range(inject_from, num_downs)) if inject == "all" else {0}

        # pix2pix's convs (all but the outermost up-conv) take their bias from the norm choice, even
        # where no norm follows; BicycleGAN's z-using networks give every conv a bias whatever the
        # norm, which is what lets their batch-norm checkpoints import.
        bias = True if nz > 0 else conv_bias_for(norm)
        width = [ngf * min(2 ** level, MAX_CHANNEL_MULTIPLIER) for level in range(num_downs)]
        innermost = num_downs - 1

        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(num_downs):
            outer_nc = input_nc if level == 0 else width[level - 1]
            inner_nc = width[level]
            z_nc = latent_channels(nz, z_grid) if level in self.z_levels else 0
            down: list[nn.Module] = [
                nn.Conv2d(outer_nc + z_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            ]
            if 0 < level < innermost:
                down.append(norm_class(inner_nc))
            self.down.append(nn.Sequential(*down))

            # the innermost up path reads the bottleneck alone; the others read [skip, up] from the level below
            up_in_nc = inner_nc if level == innermost else 2 * inner_nc
            up_out_nc = output_nc if level == 0 else outer_nc
            up: list[nn.Module] = [activation(nl)]
            up += upsampling_layers(up_in_nc, up_out_nc, upsample, bias=True if level == 0 else bias)
            if level == 0:
                up.append(nn.Tanh())
            else:
                up.append(norm_class(up_out_nc))
                if use_dropout and FIRST_DROPOUT_LEVEL <= level < innermost:
                    up.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*up))
        # Empty without attention: no parameters and no state-dict keys (official imports stay exact).
        self.attention = nn.ModuleDict({str(level): SelfAttention(width[level - 1]) for level in attention_levels})

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Translate ``x`` (N, input_nc, H, W), guided by ``z`` (N, nz) when nz > 0, to (N, output_nc, H, W)."""
        check_generator_inputs(self.network_name, x, z, input_nc=self.input_nc, nz=self.nz,
                               size_multiple=self.size_multiple, downsamplings=self.num_downs)
        skips: list[torch.Tensor] = []
        h = x
        for level, down in enumerate(self.down):
            z_here = z is not None and level in self.z_levels
            block_input = tile_latent(h, z, self.z_grid) if z_here else h
            if level > 0:
                # The outermost level convolves the image itself; the others start with LeakyReLU.
                block_input = F.leaky_relu(block_input, 0.2)
                # The official in-place LeakyReLU rewrites the tensor it reads: without z that tensor is
                # also the skip, so the skip carries activated features; with z it is a concatenated copy
                # and the skip keeps the raw ones. We reproduce both, explicitly.
                skips.append(block_input if not z_here else h)
            h = down(block_input)

        for level in reversed(range(self.num_downs)):
            h = self.up[level](h)
            if str(level) in self.attention:
                h = self.attention[str(level)](h)
            if level > 0:
                skip = skips[level - 1]
                h = torch.cat([skip, h] if self.skip_first else [h, skip], dim=1)
        return h


for _name, _depth in UNET_PRESETS.items():
    register_preset(
        "generator", _name, UNetGenerator, fixed={"num_downs": _depth},
        description=f"U-Net generator for {2 ** _depth}x{2 ** _depth} images ({_depth} down-samplings), "
                    "as in pix2pix and BicycleGAN",
    )
