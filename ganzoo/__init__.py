"""ganzoo: pix2pix, CycleGAN and BicycleGAN from one registry of interchangeable parts.

The public API::

    ganzoo.build(kind, name, **kwargs)     # any registered component
    ganzoo.list_components(kind=None)      # {kind: [names]}
    ganzoo.register(kind, name)            # decorator for your own components
"""
from ganzoo.errors import GanzooError
from ganzoo.registry import KINDS, build, get_component, list_components, register, register_preset

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "GanzooError",
    "__version__",
    "build",
    "get_component",
    "list_components",
    "register",
    "register_preset",
]
