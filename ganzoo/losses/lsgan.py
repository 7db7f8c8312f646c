"""Least-squares GAN: mean squared error to the real/fake label (pix2pix/CycleGAN/BicycleGAN default)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.losses.gan_loss import GANLoss
from ganzoo.registry import register


@register("gan_loss", "lsgan")
class LSGANLoss(GANLoss):
    """Least-squares GAN: MSE between D's output and the label 1 (real) or 0 (fake).

    Args:
        target_real_label: value a real prediction is pulled towards.
        target_fake_label: value a fake prediction is pulled towards.
    """

    def __init__(self, target_real_label: float = 1.0, target_fake_label: float = 0.0) -> None:
        super().__init__()
        self.target_real_label = float(target_real_label)
        self.target_fake_label = float(target_fake_label)

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        label = self.target_real_label if target_is_real else self.target_fake_label
        return F.mse_loss(prediction, torch.full_like(prediction, label))
