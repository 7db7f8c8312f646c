"""Residual encoder (BicycleGAN's ``resnet_128`` / ``resnet_256``, the default E of BicycleGAN)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ganzoo.encoders.conv import LatentHead, check_encoder_input, check_positive
from ganzoo.layers import activation, norm_layer
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import register, register_preset


class DownResidualBlock(nn.Module):
    """Pre-activation residual block that halves the resolution by average pooling.

    Main branch: norm, nl, 3x3 conv, norm, nl, 3x3 conv, 2x2 mean pool.
    Shortcut: 2x2 mean pool then a 1x1 conv to the new channel count.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, nl: str) -> None:
        super().__init__()
        norm_class = norm_layer(norm)
        first_nl = activation(nl)
        # With norm "none" the first activation would see the block input itself, which the
        # shortcut also reads: it must not overwrite it in place.
        if hasattr(first_nl, "inplace"):
            first_nl.inplace = False
        self.residual = nn.Sequential(
            norm_class(in_channels),
            first_nl,
            nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
            norm_class(in_channels),
            activation(nl),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


@register("encoder", "resnet")
class ResNetEncoder(nn.Module):
    """Residual encoder (BicycleGAN E_ResNet): a stride-2 conv, n_blocks-1 residual down blocks, mu/logvar.

    Args:
        input_nc: channels of the encoded image.
        nz: size of the latent code.
        nef: filters of the first conv; block ``n`` outputs ``nef * min(n + 1, 4)`` channels.
        n_blocks: number of halvings (the first conv plus ``n_blocks - 1`` blocks); the input side
            must be a multiple of ``2**n_blocks``.
        norm: registered norm name, used inside the residual blocks.
        nl: registered activation name.
        vae: predict a log-variance too (``False``: a point estimate, logvar ``None``).
        z_grid: 1 for one global code; ``g > 1`` for one code per cell of a ``g x g`` grid
            (:mod:`ganzoo.layers.latent`); the last feature map must be at least ``g x g``.
        spectral_norm: spectral normalisation on every conv and on the linear heads (combinable with
            any norm).
    """

    def __init__(self, input_nc: int = 3, nz: int = 8, nef: int = 64, n_blocks: int = 4,
                 norm: str = "instance", nl: str = "lrelu", vae: bool = True, z_grid: int = 1,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        check_positive("encoder 'resnet'", input_nc=input_nc, nz=nz, nef=nef, n_blocks=n_blocks)
        self.input_nc = input_nc
        self.nz = nz
        self.vae = vae
        self.z_grid = z_grid
        self.size_multiple = 2**n_blocks

        # Convs keep their biases whatever the norm, as in the official encoder (same parameters).
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1)]
        channels = nef
        for n in range(1, n_blocks):
            out_channels = nef * min(n + 1, 4)
            layers.append(DownResidualBlock(channels, out_channels, norm, nl))
            channels = out_channels
        layers.append(activation(nl))
        self.features = nn.Sequential(*layers)
        self.head = LatentHead(channels, nz, vae, z_grid, "encoder 'resnet'")
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode ``x`` [N, input_nc, H, W] to ``(mu, logvar)``, each [N, nz] (logvar None if not vae)."""
        check_encoder_input(self, x, self.size_multiple)
        return self.head(self.features(x))


register_preset("encoder", "resnet_128", ResNetEncoder, fixed={"n_blocks": 4},
                description="Residual encoder for 128 px images (4 halvings, BicycleGAN resnet_128).")
register_preset("encoder", "resnet_256", ResNetEncoder, fixed={"n_blocks": 5},
                description="Residual encoder for 256 px images (5 halvings, BicycleGAN resnet_256).")
