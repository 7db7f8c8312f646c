"""The original GAN objective, as binary cross-entropy on logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.losses.gan_loss import LabelTargetGANLoss
from ganzoo.registry import register


@register("gan_loss", "vanilla")
class VanillaGANLoss(LabelTargetGANLoss):
    """Original GAN: binary cross-entropy on D's logits (D must not end with a sigmoid).

    The sigmoid is folded into the loss, which keeps it finite for confident logits.

    Args:
        target_real_label: label of a real prediction.
        target_fake_label: label of a fake prediction.
    """

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(prediction, self.target(prediction, target_is_real))
