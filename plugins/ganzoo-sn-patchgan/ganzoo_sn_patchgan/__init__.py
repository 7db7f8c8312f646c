"""A spectral-norm PatchGAN discriminator, registered as ``discriminator: sn_patchgan``.

Importing this module registers the component; ganzoo imports it at start-up through the
``ganzoo.plugins`` entry point declared in ``pyproject.toml``.

ganzoo's own discriminators now take ``spectral_norm: true``; ``{type: nlayer, norm: none,
spectral_norm: true}`` is this network. The plugin stays as a worked example of writing one.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import register
from ganzoo.discriminators.nlayer import (
    check_discriminator_input,
    check_positive,
    patchgan_layers,
    patchgan_min_size,
    smallest_power_of_two_at_least,
)

__all__ = ["SpectralNormPatchGAN"]


@register("discriminator", "sn_patchgan")
class SpectralNormPatchGAN(nn.Module):
    """PatchGAN with spectral normalisation on every conv (no other norm), as in SN-GAN.

    Args:
        input_nc: channels of the judged image (pix2pix: input and output concatenated).
        ndf: filters of the first conv; later convs double it, up to 8x.
        n_layers: number of stride-2 convs (3: 70x70 patches).
        n_power_iterations: power-iteration steps per forward pass that estimate each conv's
            largest singular value (1, as in the SN-GAN paper).

    Spectral norm bounds each layer's Lipschitz constant by 1, which stabilises D without batch
    statistics. The convs are wrapped with ``torch.nn.utils.parametrizations.spectral_norm``; a
    recipe's ``model.init`` draws their stored weights (``parametrizations.weight.original``), as for
    ganzoo's own ``spectral_norm: true``.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, n_power_iterations: int = 1) -> None:
        super().__init__()
        check_positive("discriminator 'sn_patchgan'", input_nc=input_nc, ndf=ndf, n_layers=n_layers,
                       n_power_iterations=n_power_iterations)
        self.input_nc = input_nc
        self.min_size = patchgan_min_size(n_layers)
        self.size_multiple = smallest_power_of_two_at_least(self.min_size)
        # The same conv stack as ganzoo's PatchGAN with norm "none" (every conv keeps its bias).
        layers = patchgan_layers(input_nc, ndf, n_layers, "none", always_bias=True)
        self.model = nn.Sequential(*[
            spectral_norm(layer, n_power_iterations=n_power_iterations) if isinstance(layer, nn.Conv2d) else layer
            for layer in layers
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score map [N, 1, H', W'] for ``x`` [N, input_nc, H, W]: one raw score per patch."""
        check_discriminator_input(self, x, self.min_size)
        return self.model(x)
