"""Stride-1 convolution gradients from faster CPU kernels (routes of accelerator ``cpu_kernels``).

On the CPUs this was measured on (AVX-512, oneDNN 3.x through PyTorch), oneDNN's backward kernels
for a 3x3 stride-1 convolution with 256 channels run well below the speed of its forward kernel for
the same FLOPs (CycleGAN's ResNet blocks; README.md). Both gradients can be computed with faster
kernels and the same maths:

- the input gradient of a stride-1 convolution is a *forward* convolution of the output gradient
  with the weights flipped in space and transposed (input <-> output channels), padded by
  ``kernel - 1 - padding``;
- the weight gradient is, for each kernel offset ``(a, b)``, one matrix product of the output
  gradient (output channels x positions) with the input shifted by ``(a, b)``. Laid out with the
  input's full row width, each shifted input is a strided view of one copy of the input, so the
  ``kh * kw`` products read it in place (MKL's GEMM, near this CPU's peak).

On one host (``python plugins/ganzoo-cpu-kernels/benchmarks/conv_backward.py``, README.md) both
pay for the image and PatchGAN heads and somewhat for CycleGAN's ResNet blocks; on another oneDNN's
own backward kernels win for the ResNet blocks and only the heads' input gradients pay. Which
gradient takes which kernel is therefore timed per layer on the machine that trains
(:mod:`ganzoo_cpu_kernels.conv_routes`). A backward that itself builds a graph (a gradient
penalty's double backward) goes through PyTorch's own kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def save_conv(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor | None, padding: tuple[int, int]) -> None:
    """What a stride-1 convolution Function's backward needs: the input, the weights, the padding and
    whether there is a bias (its gradient is the output gradient's sum)."""
    ctx.save_for_backward(x, weight)
    ctx.padding = padding  # type: ignore[attr-defined]
    ctx.has_bias = bias is not None  # type: ignore[attr-defined]


def saved_conv(ctx: torch.autograd.function.FunctionCtx
               ) -> tuple[torch.Tensor, torch.Tensor, tuple[bool, bool, bool]]:
    """The input and weights :func:`save_conv` kept, and which of (input, weight, bias) need a gradient."""
    x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
    needs = ctx.needs_input_grad  # type: ignore[attr-defined]
    return x, weight, (needs[0], needs[1], ctx.has_bias and needs[2])  # type: ignore[attr-defined]


def native_stride_one_grads(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool,
                            padding: tuple[int, int], needed: tuple[bool, bool, bool]
                            ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """PyTorch's own gradients of ``F.conv2d(x, weight, bias, 1, padding)`` (input, weight, bias, where
    ``needed``): twice differentiable, for a backward that builds a graph (a gradient penalty)."""
    grads = torch.ops.aten.convolution_backward(
        grad_out, x, weight, [weight.shape[0]] if has_bias else None, [1, 1], list(padding), [1, 1],
        False, [0, 0], 1, list(needed))
    return grads[0], grads[1], grads[2]


class StrideOneConv2d(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, stride=1, padding)`` whose backward computes the input gradient as a
    forward convolution (``input_grad_by_conv``) and/or the weight gradient as shifted GEMMs
    (``weight_grad_by_gemm``), and the other one with oneDNN's backward kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int],
                input_grad_by_conv: bool = True, weight_grad_by_gemm: bool = True) -> torch.Tensor:
        save_conv(ctx, x, weight, bias, padding)
        ctx.routes = (input_grad_by_conv, weight_grad_by_gemm)
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, weight, needed = saved_conv(ctx)
        if torch.is_grad_enabled():  # create_graph=True
            return *native_stride_one_grads(grad_out, x, weight, ctx.has_bias, ctx.padding, needed), None, None, None
        need_x, need_w, need_b = needed
        ph, pw = ctx.padding
        grad_out = grad_out.contiguous()
        kh, kw = weight.shape[2:]
        x_by_conv, w_by_gemm = need_x and ctx.routes[0], need_w and ctx.routes[1]
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
        return grad_x, grad_w, grad_b, None, None, None
