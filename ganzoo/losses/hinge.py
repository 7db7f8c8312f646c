"""The hinge GAN objective (SAGAN, SPADE, BigGAN)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.losses.gan_loss import GANLoss
from ganzoo.registry import register


@register("gan_loss", "hinge")
class HingeGANLoss(GANLoss):
    """Hinge loss: D gets relu(1 - D) on real and relu(1 + D) on fake, G gets -mean(D)."""

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if for_discriminator:
            margin = 1.0 - prediction if target_is_real else 1.0 + prediction
            return F.relu(margin).mean()
        if not target_is_real:
            # The generator's hinge term only rewards fooling D; there is no "make it look fake" form.
            raise ValueError("hinge loss for the generator needs target_is_real=True")
        return -prediction.mean()
