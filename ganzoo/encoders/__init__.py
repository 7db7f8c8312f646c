"""Encoders: image -> (mu, logvar) of the latent code (ResNet, strided conv, any timm backbone)."""
from ganzoo.encoders import conv, resnet, timm_backbone  # noqa: F401  (registers the encoders)
