"""Discriminators: image -> real/fake score map(s) (n-layer PatchGAN, multiscale PatchGAN, PixelGAN)."""
from ganzoo.discriminators import multiscale, nlayer, pixel  # noqa: F401  (registers the discriminators)
