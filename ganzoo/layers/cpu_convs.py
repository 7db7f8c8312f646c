"""Convolution modules that take the fastest equivalent CPU formulation (``train.tuned_cpu_convs``).

:class:`TunedConv2d` and :class:`TunedConvTranspose2d` are ``nn.Conv2d`` and ``nn.ConvTranspose2d``
(same parameters, state-dict keys and results, float rounding aside) that, for float32 CPU tensors
in the default layout without autocast, compute each call the way measured fastest on this
project's CPU for its sizes:

- weights that outweigh the maps (a U-Net's inner levels): im2col + one GEMM
  (:mod:`ganzoo.layers.gemm_conv`);
- stride-1 convolutions with many channels on large maps, and image/PatchGAN heads: oneDNN's
  forward, with gradients from a forward convolution and shifted GEMMs
  (:mod:`ganzoo.layers.conv_backward`);
- everything else, and every CUDA, half-precision, channels-last or autocast call: PyTorch's own.

The choice is made per call from the sizes, batch included: a data-parallel rank's share of the
batch may take another kernel than the whole batch would, which rounds differently.

:func:`use_tuned_cpu_convs` switches the convolutions of a model in place (``ganzoo train`` and
``ganzoo bench`` do, unless ``train.tuned_cpu_convs: false`` or ``train.compile: true``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganzoo.layers import conv_backward
from ganzoo.layers.conv_backward import StrideOneConv2d
from ganzoo.layers.gemm_conv import (conv2d_by_gemm, conv_by_gemm_pays, conv_transpose2d_by_gemm,
                                     conv_transpose_by_gemm_pays)


def plain_cpu_float32(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a call may leave PyTorch's kernels: float32 CPU tensors in the default (NCHW)
    layout, no autocast."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.dim() == 4 and x.is_contiguous() and weight.is_contiguous()
            and not torch.is_autocast_enabled("cpu"))


class TunedConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed as im2col + GEMM or with rewritten stride-1 gradients where that pays."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not plain_cpu_float32(x, self.weight):
            return super().forward(x)
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.kernel_size, self.padding, self.stride, self.dilation
        h_out = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        w_out = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        positions = x.shape[0] * h_out * w_out
        if conv_by_gemm_pays(self.weight.numel(), positions):
            return conv2d_by_gemm(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if (self.stride == (1, 1) and self.dilation == (1, 1) and ph <= kh - 1 and pw <= kw - 1
                and torch.is_grad_enabled() and self._a_gradient_route_pays(x, positions)):
            return StrideOneConv2d.apply(x, self.weight, self.bias, self.padding)
        return super().forward(x)

    def _a_gradient_route_pays(self, x: torch.Tensor, positions: int) -> bool:
        # looked up on the module at call time, so that tests can force either route
        return ((x.requires_grad and conv_backward.forward_conv_input_grad_pays(
                    self.in_channels, self.out_channels, self.kernel_size, positions))
                or (self.weight.requires_grad and conv_backward.gemm_weight_grad_pays(
                    self.in_channels, self.out_channels, positions)))


class TunedConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` computed as one GEMM + fold where that pays."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and plain_cpu_float32(x, self.weight) and (
                conv_transpose_by_gemm_pays(self.weight.numel(), x.shape[0] * x.shape[2] * x.shape[3],
                                            self.out_channels)):
            return conv_transpose2d_by_gemm(x, self.weight, self.bias, self.stride, self.padding,
                                            self.output_padding, self.dilation)
        return super().forward(x, output_size)


def _tuned_class(module: nn.Module) -> type[nn.Module] | None:
    """The tuned class for ``module``, or None where it must stay as it is (subclasses with their own
    forward, groups, non-zero padding modes, string paddings)."""
    if type(module) is nn.Conv2d:
        tuned: type[nn.Module] = TunedConv2d
    elif type(module) is nn.ConvTranspose2d:
        tuned = TunedConvTranspose2d
    else:
        return None
    if module.groups != 1 or module.padding_mode != "zeros" or not isinstance(module.padding, tuple):
        return None
    return tuned


def use_tuned_cpu_convs(module: nn.Module) -> int:
    """Switch every eligible ``nn.Conv2d`` / ``nn.ConvTranspose2d`` inside ``module`` to its tuned
    class, in place (parameters and state-dict keys unchanged). Returns how many were switched."""
    switched = 0
    for child in module.modules():
        tuned = _tuned_class(child)
        if tuned is not None:
            child.__class__ = tuned
            switched += 1
    return switched
