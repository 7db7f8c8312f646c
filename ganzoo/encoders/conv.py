"""Plain convolutional encoder (BicycleGAN's ``conv_128`` / ``conv_256``) and the latent head shared by encoders.

An encoder maps an image to the mean and log-variance of a Gaussian over the latent code ``z``
(``vae=True``, as in cVAE-GAN) or to a point estimate of ``z`` (``vae=False``, logvar ``None``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganzoo.errors import ComponentError
from ganzoo.layers import activation, norm_layer
from ganzoo.layers.checks import check_image_batch, check_min_size, check_positive
from ganzoo.layers.latent import check_z_grid, latent_channels
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import register, register_preset


def check_encoder_input(net: nn.Module, x: torch.Tensor, min_size: int) -> None:
    """Raise a ComponentError when ``x`` is not an image batch ``net`` can encode."""
    name = type(net).__name__
    check_image_batch(name, x, net.input_nc, "encoder")
    check_min_size(name, x, min_size, "(its last feature map must not vanish)",
                   "an encoder with fewer downsamplings")


class LatentHead(nn.Module):
    """Average pooling then linear maps to the latent mean and (for a VAE) log-variance.

    The official encoders end with a fixed ``AvgPool2d(8)``, which only fits 128 and 256 px
    inputs; averaging to 1x1 has the same parameters and result there and works at any size.
    With ``z_grid = g > 1`` the features are averaged to ``g x g`` cells and the same linear maps
    give each cell its ``nz / g**2`` numbers, flattened channel-major as :mod:`ganzoo.layers.latent`
    lays them out again in the generator.
    """

    def __init__(self, in_features: int, nz: int, vae: bool, z_grid: int = 1, network: str = "encoder") -> None:
        super().__init__()
        check_z_grid(network, nz, z_grid)
        self.z_grid = z_grid
        self.network = network
        per_cell = latent_channels(nz, z_grid)
        self.fc_mu = nn.Linear(in_features, per_cell)
        self.fc_logvar = nn.Linear(in_features, per_cell) if vae else None

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.z_grid == 1:
            if features.dim() == 4:
                features = F.adaptive_avg_pool2d(features, 1).flatten(1)
            mu = self.fc_mu(features)
            logvar = self.fc_logvar(features) if self.fc_logvar is not None else None
            return mu, logvar
        if features.dim() != 4 or min(features.shape[-2:]) < self.z_grid:
            size = "x".join(str(s) for s in features.shape[2:]) or "pooled"
            raise ComponentError(
                f"{self.network}: z_grid={self.z_grid} needs a last feature map of at least "
                f"{self.z_grid}x{self.z_grid}; this input gives {size}",
                hint="use larger images, an encoder with fewer down-samplings, or a smaller z_grid",
            )
        cells = F.adaptive_avg_pool2d(features, self.z_grid).flatten(2).transpose(1, 2)  # (N, g*g, C)

        def per_cell(linear: nn.Linear) -> torch.Tensor:
            return linear(cells).transpose(1, 2).flatten(1)  # (N, nz) channel-major

        return per_cell(self.fc_mu), per_cell(self.fc_logvar) if self.fc_logvar is not None else None


@register("encoder", "conv")
class ConvEncoder(nn.Module):
    """Strided-conv encoder (BicycleGAN E_NLayers): n_layers stride-2 convs, pooled to mu/logvar.

    Args:
        input_nc: channels of the encoded image.
        nz: size of the latent code.
        nef: filters of the first conv; later convs double it, up to 4x.
        n_layers: number of stride-2 convs; the input side must be a multiple of ``2**(n_layers + 1)``
            so the last normalised map is at least 2x2.
        norm: registered norm name, applied after every conv but the first.
        nl: registered activation name.
        vae: predict a log-variance too (``False``: a point estimate, logvar ``None``).
        z_grid: 1 for one global code; ``g > 1`` for one code per cell of a ``g x g`` grid
            (:mod:`ganzoo.layers.latent`); the last feature map must be at least ``g x g``.
        spectral_norm: spectral normalisation on every conv and on the linear heads (combinable with
            any norm).
    """

    def __init__(self, input_nc: int = 3, nz: int = 8, nef: int = 64, n_layers: int = 3,
                 norm: str = "instance", nl: str = "lrelu", vae: bool = True, z_grid: int = 1,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        check_positive("encoder 'conv'", input_nc=input_nc, nz=nz, nef=nef, n_layers=n_layers)
        self.input_nc = input_nc
        self.nz = nz
        self.vae = vae
        self.z_grid = z_grid
        # The last norm needs at least a 2x2 map: instance norm of a 1x1 map is undefined (and would
        # erase the code), so the input side must reach 2**(n_layers + 1), one halving more than it takes.
        self.size_multiple = 2 ** (n_layers + 1) if n_layers > 1 else 2
        norm_class = norm_layer(norm)

        # The official encoder keeps conv biases whatever the norm, so we do too (same parameters).
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1), activation(nl)]
        channels = nef
        for n in range(1, n_layers):
            out_channels = nef * min(2**n, 4)
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=4, stride=2, padding=1),
                norm_class(out_channels),
                activation(nl),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = LatentHead(channels, nz, vae, z_grid, "encoder 'conv'")
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode ``x`` [N, input_nc, H, W] to ``(mu, logvar)``, each [N, nz] (logvar None if not vae)."""
        check_encoder_input(self, x, self.size_multiple)
        return self.head(self.features(x))


register_preset("encoder", "conv_128", ConvEncoder, fixed={"n_layers": 4},
                description="Strided-conv encoder for 128 px images (4 stride-2 convs, BicycleGAN conv_128).")
register_preset("encoder", "conv_256", ConvEncoder, fixed={"n_layers": 5},
                description="Strided-conv encoder for 256 px images (5 stride-2 convs, BicycleGAN conv_256).")
