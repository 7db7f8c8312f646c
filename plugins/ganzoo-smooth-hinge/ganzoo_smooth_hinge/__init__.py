"""A smooth hinge GAN objective, registered as ``gan_loss: smooth_hinge``.

The hinge loss (``relu(1 - D(real)) + relu(1 + D(fake))`` for D, ``-D(fake)`` for G) has zero
gradient once D is confident past the margin. Replacing ``relu(m)`` by
``t * softplus(m / t)`` keeps a small gradient everywhere and tends to the hinge as the
temperature ``t`` goes to 0. The generator keeps the hinge's ``-mean(D)`` term.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.losses.gan_loss import GANLoss
from ganzoo.registry import register, registry

__all__ = ["SmoothHingeGANLoss", "register_components"]


class SmoothHingeGANLoss(GANLoss):
    """Hinge loss with a softplus corner: D gets t*softplus((margin -/+ D)/t), G gets -mean(D).

    Args:
        margin: the hinge margin (1.0 in SAGAN/BigGAN).
        temperature: how round the corner is; 0 < t, smaller is closer to the plain hinge.
    """

    def __init__(self, margin: float = 1.0, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"smooth_hinge: temperature must be > 0, got {temperature!r}")
        self.margin = float(margin)
        self.temperature = float(temperature)

    def scale_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if for_discriminator:
            excess = self.margin - prediction if target_is_real else self.margin + prediction
            return (self.temperature * F.softplus(excess / self.temperature)).mean()
        if not target_is_real:
            raise ValueError("smooth_hinge for the generator needs target_is_real=True")
        return -prediction.mean()


def register_components() -> None:
    """Register the loss (called once by ganzoo through the ``ganzoo.plugins`` entry point)."""
    losses = registry("gan_loss")
    if "smooth_hinge" in losses and losses.get("smooth_hinge").factory is SmoothHingeGANLoss:
        return  # already registered by an earlier call; another owner of the name is still an error
    register("gan_loss", "smooth_hinge")(SmoothHingeGANLoss)


# Importing the module registers too, so `ganzoo --plugin ganzoo_smooth_hinge` and a recipe's
# `plugins: [ganzoo_smooth_hinge]` work as well as the entry point (which then finds it done).
register_components()
