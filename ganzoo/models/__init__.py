"""The three models, each one module: pix2pix, CycleGAN, BicycleGAN (registered in the ``model`` registry)."""
from ganzoo.models import bicyclegan, cyclegan, pix2pix  # noqa: F401
from ganzoo.models.bicyclegan import BicycleGAN
from ganzoo.models.cyclegan import CycleGAN
from ganzoo.models.pix2pix import Pix2Pix

__all__ = ["BicycleGAN", "CycleGAN", "Pix2Pix"]
