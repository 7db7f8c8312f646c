"""The original GAN objective, as binary cross-entropy on logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.losses.gan_loss import GANLoss
from ganzoo.registry import register


@register("gan_loss", "vanilla")
class VanillaGANLoss(GANLoss):
    """Original GAN: binary cross-entropy on D's logits (D must not end with a sigmoid).

    The sigmoid is folded into the loss, which keeps it finite for confident logits.

    Args:
        target_real_label: label of a real prediction.
        target_fake_label: label of a fake prediction.
    """

    def __init__(self, target_real_label: float = 1.0, target_fake_label: float = 0.0) -> None:
        super().__init__()
        self.target_real_label = float(target_real_label)
        self.target_fake_label = float(target_fake_label)

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        label = self.target_real_label if target_is_real else self.target_fake_label
        return F.binary_cross_entropy_with_logits(prediction, torch.full_like(prediction, label))
