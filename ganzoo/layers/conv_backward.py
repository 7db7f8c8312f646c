"""Stride-1 convolution gradients from faster CPU kernels (part of ``train.tuned_cpu_convs``).

On the CPUs these sessions measure (AVX-512, oneDNN 3.x through PyTorch), oneDNN's backward kernels
for a 3x3 stride-1 convolution with 256 channels run at about half the speed of its forward kernel
(the ResNet blocks of CycleGAN's generator at 128 px: forward 11.6 ms, backward-data 18.6 ms,
backward-weights 20.3 ms for the same FLOPs). Both gradients can be computed with faster kernels
and the same maths:

- the input gradient of a stride-1 convolution is a *forward* convolution of the output gradient
  with the weights flipped in space and transposed (input <-> output channels), padded by
  ``kernel - 1 - padding``;
- the weight gradient is, for each kernel offset ``(a, b)``, one matrix product of the output
  gradient (output channels x positions) with the input shifted by ``(a, b)``. Laid out with the
  input's full row width, each shifted input is a strided view of one copy of the input, so the
  ``kh * kw`` products read it in place (MKL's GEMM, near this CPU's peak).

:class:`ganzoo.layers.cpu_convs.TunedConv2d` takes this route where the size rules below say it
pays, for float32 CPU tensors in the default layout, stride 1, no dilation or groups, zero padding,
no autocast (``train.tuned_cpu_convs``). A backward that itself builds a graph (a gradient
penalty's double backward) goes through PyTorch's own kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.layers.gemm_conv import HEAD_MAX_OUT_CHANNELS

#: Where each route beats oneDNN's backward kernel, measured on this project's 2-core AVX-512 Xeon
#: (``python benchmarks/conv_backward.py``, 2 threads, the two routes alternating; docs/performance.md).
#: The rules are that CPU's: on the 2-core AMD EPYC host the stride-1 routes made CycleGAN's step 5-25%
#: slower while the GEMM routes still paid (docs/performance.md, "On the 2-core AMD EPYC host").
#: Heads (at most ``HEAD_MAX_OUT_CHANNELS`` output channels): both rewritten routes pay (1.2-3.6x and 1.3-1.5x).
#: The input gradient as a forward convolution pays for 3x3 kernels with many channels on large maps
#: (the ResNet blocks at 128 and 256 px: 1.10-1.30x) and loses for 4x4 kernels and small maps (0.67-0.87x).
FORWARD_INPUT_GRAD_MIN_CHANNELS = 128
FORWARD_INPUT_GRAD_MIN_WORK = 2 ** 18  # min(channels) * output positions
#: The weight gradient as shifted GEMMs pays from 256 channels (1.02-1.26x), from 128 channels on at
#: least 2048 output positions (1.06x), and for heads on large maps; below, oneDNN is faster (0.6-0.85x).
GEMM_WEIGHT_GRAD_MIN_CHANNELS = 128
GEMM_WEIGHT_GRAD_ALWAYS_CHANNELS = 256
GEMM_WEIGHT_GRAD_MIN_POSITIONS = 2048
GEMM_HEAD_WEIGHT_GRAD_MIN_WORK = 2 ** 17  # input channels * output positions


def forward_conv_input_grad_pays(c_in: int, c_out: int, kernel: tuple[int, int], positions: int) -> bool:
    """Whether the input gradient goes through a forward convolution (``positions``: N * H_out * W_out)."""
    if c_out <= HEAD_MAX_OUT_CHANNELS:
        return True
    channels = min(c_in, c_out)
    return (kernel == (3, 3) and channels >= FORWARD_INPUT_GRAD_MIN_CHANNELS
            and channels * positions >= FORWARD_INPUT_GRAD_MIN_WORK)


def gemm_weight_grad_pays(c_in: int, c_out: int, positions: int) -> bool:
    """Whether the weight gradient goes through shifted GEMMs (``positions``: N * H_out * W_out)."""
    if c_out <= HEAD_MAX_OUT_CHANNELS:
        return c_in * positions >= GEMM_HEAD_WEIGHT_GRAD_MIN_WORK
    channels = min(c_in, c_out)
    return channels >= GEMM_WEIGHT_GRAD_ALWAYS_CHANNELS or (
        channels >= GEMM_WEIGHT_GRAD_MIN_CHANNELS and positions >= GEMM_WEIGHT_GRAD_MIN_POSITIONS)


def weight_grad_by_shifted_gemms(x: torch.Tensor, grad_out: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """The weight gradient of a stride-1, unpadded convolution of ``x`` (N, I, Hp, Wp) that gave
    ``grad_out`` (N, O, H, W): one GEMM per kernel offset over a single copy of the input."""
    n, c_in, hp, wp = x.shape
    c_out, h, w = grad_out.shape[1], grad_out.shape[2], grad_out.shape[3]
    kh, kw = kernel
    plane = hp * wp
    positions = n * plane
    # The input as (I, N * Hp * Wp) with a zero tail: the view shifted by (a, b) reads up to
    # (kh - 1) * Wp + kw - 1 elements past the last plane.
    flat_x = x.new_empty(c_in, positions + (kh - 1) * wp + kw - 1)
    flat_x[:, positions:].zero_()
    flat_x[:, :positions].view(c_in, n, plane).copy_(x.reshape(n, c_in, plane).transpose(0, 1))
    # The output gradient on the input's grid, zero where no output position exists, so that the
    # wrapped-around columns of each shifted view contribute nothing.
    flat_g = grad_out.new_zeros(c_out, n, hp, wp)
    flat_g[:, :, :h, :w].copy_(grad_out.transpose(0, 1))
    flat_g = flat_g.view(c_out, positions)
    out = x.new_empty(kh, kw, c_out, c_in)
    for a in range(kh):
        for b in range(kw):
            shifted = flat_x.as_strided((positions, c_in), (1, flat_x.stride(0)), flat_x.storage_offset() + a * wp + b)
            torch.mm(flat_g, shifted, out=out[a, b])
    return out.permute(2, 3, 0, 1).contiguous()


class StrideOneConv2d(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, stride=1, padding)`` whose backward uses the kernels above."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        ph, pw = ctx.padding
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        if torch.is_grad_enabled():
            # create_graph=True (a gradient penalty): PyTorch's own backward is twice differentiable.
            grads = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [ph, pw], [1, 1],
                False, [0, 0], 1, [need_x, need_w, need_b])
            return grads[0], grads[1], grads[2], None
        grad_out = grad_out.contiguous()
        c_out, c_in, kh, kw = weight.shape
        positions = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3]
        x_by_conv = need_x and forward_conv_input_grad_pays(c_in, c_out, (kh, kw), positions)
        w_by_gemm = need_w and gemm_weight_grad_pays(c_in, c_out, positions)
        grad_x = grad_w = grad_b = None
        if (need_x and not x_by_conv) or (need_w and not w_by_gemm):
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [ph, pw], [1, 1], False, [0, 0], 1,
                [need_x and not x_by_conv, need_w and not w_by_gemm, False])
        if x_by_conv:
            grad_x = F.conv2d(grad_out, weight.flip(2, 3).transpose(0, 1), None, 1, (kh - 1 - ph, kw - 1 - pw))
        if w_by_gemm:
            padded = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
            grad_w = weight_grad_by_shifted_gemms(padded, grad_out, (kh, kw))
        if need_b:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None
