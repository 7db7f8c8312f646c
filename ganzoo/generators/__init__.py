"""Generators: image-to-image networks ``forward(x, z=None) -> y`` with outputs in [-1, 1].

Importing this package registers the U-Net family (``unet``, ``unet_128``, ``unet_256``) and the
ResNet family (``resnet``, ``resnet_6blocks``, ``resnet_9blocks``).
"""
from ganzoo.generators import resnet, unet  # noqa: F401
from ganzoo.generators.resnet import ResnetGenerator
from ganzoo.generators.unet import UNetGenerator

__all__ = ["ResnetGenerator", "UNetGenerator"]
