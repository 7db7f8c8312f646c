"""The Wasserstein critic objective (pair it with :func:`ganzoo.losses.gradient_penalty`)."""
from __future__ import annotations

import torch

from ganzoo.losses.gan_loss import GANLoss
from ganzoo.registry import register


@register("gan_loss", "wgangp")
class WGANGPLoss(GANLoss):
    """Wasserstein GAN: -mean(D) for real, mean(D) for fake; add the gradient penalty for D."""

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        return -prediction.mean() if target_is_real else prediction.mean()
