"""GAN objectives (the ``gan_loss`` registry) and the WGAN-GP gradient penalty.

Every loss is an ``nn.Module`` called as ``loss(prediction, target_is_real, for_discriminator=True)``
and returns a scalar. ``prediction`` is the discriminator output: one tensor, or a list of tensors
from a multiscale discriminator, whose per-scale losses are summed as in the official code.
"""
from ganzoo.losses import hinge, lsgan, vanilla, wgangp  # noqa: F401  (each import registers a loss)
from ganzoo.losses.gan_loss import GANLoss
from ganzoo.losses.gradient_penalty import gradient_penalty

__all__ = ["GANLoss", "gradient_penalty"]
