"""ganzoo-cut: CUT and FastCUT (contrastive unpaired translation) as a ganzoo plugin.

Importing the package registers:

- ``model: cut`` and ``model: fastcut`` (:mod:`ganzoo_cut.model`);
- ``generator: resnet_antialias`` (+ ``resnet_9blocks_antialias``, ``resnet_6blocks_antialias``) and
  ``discriminator: nlayer_antialias`` (+ ``basic_antialias``), the official CUT networks
  (:mod:`ganzoo_cut.antialias`).

The PatchNCE loss (:mod:`ganzoo_cut.patchnce`), the patch sampler with its MLP heads
(:mod:`ganzoo_cut.sampler`) and the feature taps on a generator (:mod:`ganzoo_cut.taps`) are plain
Python API: ganzoo has no component kind for them.
"""
from ganzoo_cut.antialias import AntialiasNLayerDiscriminator, AntialiasResnetGenerator, BlurDownsample, BlurUpsample
from ganzoo_cut.model import CUT, FastCUT
from ganzoo_cut.patchnce import PatchNCELoss, patchnce_loss
from ganzoo_cut.sampler import PatchSampleMLP
from ganzoo_cut.taps import OFFICIAL_NCE_LAYERS, FeatureTaps, resolve_layers

__version__ = "0.1.0"

__all__ = ["CUT", "OFFICIAL_NCE_LAYERS", "AntialiasNLayerDiscriminator", "AntialiasResnetGenerator", "BlurDownsample",
           "BlurUpsample", "FastCUT", "FeatureTaps", "PatchNCELoss", "PatchSampleMLP", "patchnce_loss",
           "resolve_layers"]
