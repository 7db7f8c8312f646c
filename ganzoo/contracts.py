"""The attributes the core reads from a built network, checked (or inferred) once, where it is built.

``docs/architecture.md`` ("Who reads what from a component") lists them: generators ``input_nc``,
``output_nc``, ``nz``, ``size_multiple``, ``z_grid``; encoders ``input_nc``, ``nz``, ``vae``,
``size_multiple``, ``z_grid``; discriminators ``input_nc``, ``size_multiple``. A plugin component
that leaves one out used to crash deep inside a model's ``check_recipe`` with an ``AttributeError``.
:func:`ensure_contract` runs right after a network is built (on the meta device while a recipe is
resolved, for real when a model is assembled) and either

- infers what can be read off the network: ``input_nc`` from its first convolution's
  ``in_channels``, a generator's ``output_nc`` from its last convolution's ``out_channels``;
- fills the documented defaults: ``nz`` 0 for a generator (no latent code), ``size_multiple`` 1,
  ``z_grid`` 1, ``vae`` False;
- or raises one :class:`~ganzoo.errors.ComponentError` naming the component, the attribute and
  the contract (an encoder's ``nz`` cannot be guessed).

A value of the wrong type (``input_nc = "3"``, ``nz = -1``) is an error too.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from ganzoo.errors import ComponentError

CONTRACT = "the component contract in docs/architecture.md (\"Who reads what from a component\")"

#: Attributes each kind must have; None: inferred from the network when missing.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "generator": ("input_nc", "output_nc"),
    "encoder": ("input_nc", "nz"),
    "discriminator": ("input_nc",),
}
#: Attributes with a documented default when a component does not set them.
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "generator": {"nz": 0, "size_multiple": 1, "z_grid": 1},
    "encoder": {"vae": False, "size_multiple": 1, "z_grid": 1},
    "discriminator": {"size_multiple": 1},
}
_MINIMUM = {"input_nc": 1, "output_nc": 1, "nz": 0, "size_multiple": 1, "z_grid": 1}
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _convolutions(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, _CONVS) and not isinstance(m, nn.modules.lazy.LazyModuleMixin)]


def infer_attribute(net: nn.Module, attribute: str) -> int | None:
    """``input_nc`` (first convolution's ``in_channels``) or ``output_nc`` (last one's ``out_channels``)."""
    convs = _convolutions(net)
    if not convs:
        return None
    if attribute == "input_nc":
        return int(convs[0].in_channels)
    if attribute == "output_nc":
        return int(convs[-1].out_channels)
    return None


def _describe(kind: str, name: str, net: Any, where: str | None) -> str:
    source = getattr(type(net), "__module__", "?")
    at = f"{where}: " if where else ""
    return f"{at}{kind} {name!r} ({type(net).__name__} from {source})"


def ensure_contract(kind: str, name: str, net: Any, where: str | None = None) -> Any:
    """Check (and complete) what the core reads from ``net``, a built ``kind`` component named ``name``.

    Args:
        kind: ``generator``, ``encoder`` or ``discriminator`` (other kinds pass unchanged).
        name: the registered name (``unet_256``, a plugin's ``tiny_patch``).
        net: what the factory built.
        where: the recipe key it came from (``model.networks.D``), for the message.

    Returns:
        ``net``, with inferred or default attributes set on it.

    Raises:
        ComponentError: ``net`` is not an ``nn.Module``, or lacks an attribute that cannot be
            inferred, or holds a value of the wrong type; the message names the component, the
            attribute and the contract.
    """
    if kind not in REQUIRED:
        return net
    if not isinstance(net, nn.Module):
        raise ComponentError(f"{_describe(kind, name, net, where)} built a {type(net).__name__}, not a "
                             f"torch.nn.Module; see {CONTRACT}")
    for attribute in REQUIRED[kind]:
        if getattr(net, attribute, None) is None:
            inferred = infer_attribute(net, attribute)
            if inferred is None:
                how = ("its first convolution's in_channels" if attribute == "input_nc" else
                       "its last convolution's out_channels" if attribute == "output_nc" else "nothing")
                raise ComponentError(
                    f"{_describe(kind, name, net, where)} has no attribute {attribute!r}, which ganzoo reads "
                    f"(and it cannot be inferred from {how}); set self.{attribute} in its __init__, as {CONTRACT} "
                    "says")
            setattr(net, attribute, inferred)
    for attribute, default in DEFAULTS[kind].items():
        if getattr(net, attribute, None) is None:
            setattr(net, attribute, default)
    for attribute, minimum in _MINIMUM.items():
        if not hasattr(net, attribute):
            continue
        value = getattr(net, attribute)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ComponentError(f"{_describe(kind, name, net, where)}: attribute {attribute!r} is {value!r}; "
                                 f"ganzoo needs an integer >= {minimum} ({CONTRACT})")
    if kind == "encoder" and not isinstance(getattr(net, "vae"), bool):
        raise ComponentError(f"{_describe(kind, name, net, where)}: attribute 'vae' is {getattr(net, 'vae')!r}; "
                             f"ganzoo needs true or false ({CONTRACT})")
    return net


__all__ = ["CONTRACT", "DEFAULTS", "REQUIRED", "ensure_contract", "infer_attribute"]
