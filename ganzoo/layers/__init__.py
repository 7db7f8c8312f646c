"""Building blocks shared by every network family: normalisations, activations, initialisations."""
from ganzoo.layers import activations, inits, norms  # noqa: F401
from ganzoo.layers.activations import activation
from ganzoo.layers.inits import init_weights
from ganzoo.layers.norms import conv_bias_for, norm_layer

__all__ = ["activation", "conv_bias_for", "init_weights", "norm_layer"]
