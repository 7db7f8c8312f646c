"""Least-squares GAN: mean squared error to the real/fake label (pix2pix/CycleGAN/BicycleGAN default)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.losses.gan_loss import LabelTargetGANLoss
from ganzoo.registry import register


@register("gan_loss", "lsgan")
class LSGANLoss(LabelTargetGANLoss):
    """Least-squares GAN: MSE between D's output and the label 1 (real) or 0 (fake).

    Args:
        target_real_label: value a real prediction is pulled towards.
        target_fake_label: value a fake prediction is pulled towards.
    """

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        return F.mse_loss(prediction, self.target(prediction, target_is_real))
