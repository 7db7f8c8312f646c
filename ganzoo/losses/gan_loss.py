"""The base class of every GAN objective: one loss per discriminator scale, summed."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

Prediction = torch.Tensor | Sequence[torch.Tensor]


class GANLoss(nn.Module):
    """Base GAN objective: subclasses score one scale in :meth:`scale_loss`."""

    def forward(self, prediction: Prediction, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        """Loss of ``prediction`` against the real (``True``) or fake (``False``) label.

        Args:
            prediction: discriminator output, or a list of outputs from a multiscale discriminator.
            target_is_real: whether ``prediction`` should be judged as real.
            for_discriminator: ``False`` when the generator is being trained (only hinge differs).
        """
        scales = [prediction] if isinstance(prediction, torch.Tensor) else list(prediction)
        if not scales:
            raise ValueError(f"{type(self).__name__} got an empty list of discriminator outputs")
        # Losses are reduced in fp32: under autocast a half-precision mean over a large patch map
        # loses precision, and BCE/MSE targets must match the prediction's dtype anyway.
        losses = [self.scale_loss(p.float(), target_is_real, for_discriminator) for p in scales]
        return torch.stack(losses).sum()

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        """Loss of one discriminator scale (a scalar)."""
        raise NotImplementedError


class LabelTargetGANLoss(GANLoss):
    """A GAN objective that pulls predictions towards a real or a fake label value.

    Args:
        target_real_label: value a real prediction is pulled towards.
        target_fake_label: value a fake prediction is pulled towards.
    """

    def __init__(self, target_real_label: float = 1.0, target_fake_label: float = 0.0) -> None:
        super().__init__()
        self.target_real_label = float(target_real_label)
        self.target_fake_label = float(target_fake_label)

    def target(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The label as a tensor shaped like ``prediction`` (on its device, in its dtype)."""
        return torch.full_like(prediction, self.target_real_label if target_is_real else self.target_fake_label)
