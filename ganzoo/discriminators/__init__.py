"""Discriminators: image -> real/fake score map(s) (n-layer, multiscale and pixel PatchGAN; ensembles of them)."""
from ganzoo.discriminators import ensemble, multiscale, nlayer, pixel  # noqa: F401  (registers the discriminators)
