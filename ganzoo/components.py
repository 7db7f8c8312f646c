"""Imports every built-in component family so that their ``@register`` decorators run."""
from ganzoo import data, discriminators, encoders, generators, layers, losses, metrics, models, schedulers  # noqa: F401
