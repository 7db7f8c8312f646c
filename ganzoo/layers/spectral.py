"""Spectral normalisation (Miyato et al., 2018) on every conv and linear layer of a network.

``spectral_norm: true`` on a discriminator or an encoder wraps each of its convolutions and linear
maps with :func:`torch.nn.utils.parametrizations.spectral_norm`: the weight a layer uses is its
stored weight divided by an estimate of its largest singular value, refined by one power iteration
per training-mode forward pass. It bounds each layer's Lipschitz constant by 1 and is combinable
with any norm (it changes the weights, not the activations).

The parameters are the same (the stored weight moves to ``<layer>.parametrizations.weight.original``);
the state dict gains the power-iteration vectors ``_u`` and ``_v`` as buffers, so a checkpoint resumes
the estimate exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

#: The layers spectral norm wraps: their ``weight`` is a matrix (or a stack of kernels) with singular values.
SPECTRAL_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def apply_spectral_norm(net: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Wrap every conv and linear layer of ``net`` (in place) with spectral normalisation; returns ``net``.

    Layers that are already wrapped, or have no weight, are left as they are.
    """
    for module in list(net.modules()):
        if (isinstance(module, SPECTRAL_LAYERS) and getattr(module, "weight", None) is not None
                and not parametrize.is_parametrized(module, "weight")):
            spectral_norm(module, n_power_iterations=n_power_iterations)
    return net


def has_spectral_norm(module: nn.Module) -> bool:
    """Whether ``module`` itself is a layer whose weight goes through spectral normalisation."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations.weight)


def uses_spectral_norm(net: nn.Module) -> bool:
    """Whether any layer of ``net`` is spectrally normalised."""
    return any(has_spectral_norm(m) for m in net.modules())


def stored_weight(module: nn.Module) -> torch.Tensor:
    """The parameter holding a layer's weight: ``weight`` itself, or the original under a parametrization."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def restart_power_iteration(module: nn.Module, iterations: int = 15) -> None:
    """Re-estimate the singular vectors of a spectrally normalised layer after its weight was re-drawn
    (an initialisation), as the wrapper does when it is created; other layers are left alone."""
    if not has_spectral_norm(module):
        return
    weight = module.parametrizations.weight.original
    for p in module.parametrizations.weight:
        if type(p).__name__ != "_SpectralNorm" or weight.ndim <= 1 or weight.is_meta:
            continue
        matrix = p._reshape_weight_to_matrix(weight)
        generator = torch.Generator(device="cpu").manual_seed(0)  # the global RNG stream stays untouched
        u = torch.randn(matrix.shape[0], generator=generator).to(p._u)
        v = torch.randn(matrix.shape[1], generator=generator).to(p._v)
        p._u.copy_(nn.functional.normalize(u, dim=0, eps=p.eps))
        p._v.copy_(nn.functional.normalize(v, dim=0, eps=p.eps))
        p._power_method(matrix, iterations)


__all__ = ["SPECTRAL_LAYERS", "apply_spectral_norm", "has_spectral_norm", "restart_power_iteration",
           "stored_weight", "uses_spectral_norm"]
