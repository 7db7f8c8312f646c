"""Convolutions whose weights outweigh their maps, as one matrix product (im2col + GEMM).

PyTorch's CPU convolutions go through oneDNN, which copies the weights into its blocked layout on
every call, forward and backward alike. For the inner levels of a 256 px U-Net (512 channels on
1x1 to 16x16 maps, 4-8 MB of weights per layer) that copy costs more than the arithmetic: in the
pix2pix step at 256 px, weight reorders were a large share of oneDNN's time (``ONEDNN_VERBOSE``;
README.md).
``F.unfold`` + ``torch.matmul`` (a convolution) and ``torch.matmul`` + ``F.fold`` (a transposed
convolution) read the weights in place, and autograd differentiates them into the matching GEMMs
and unfold/fold. Same maths, float rounding aside.

It pays for the U-Net's inner levels and its image head (a transposed convolution to 3 channels);
layers whose maps outweigh their weights lose (``python plugins/ganzoo-cpu-kernels/benchmarks/conv_backward.py
--gemm``; README.md). Whether it pays for a layer is timed on the machine that trains
(:mod:`ganzoo_cpu_kernels.conv_routes`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def conv2d_by_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d`` (groups 1, zero padding) as unfold + one matrix product."""
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    h_out = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    columns = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # N, C_in*kh*kw, L
    out = torch.matmul(weight.reshape(c_out, -1), columns)  # N, C_out, L
    if bias is not None:
        out = out + bias.view(1, c_out, 1)
    # Reshaped as a new tensor, not a view: autograd turns an in-place op on a view (the inplace
    # LeakyReLU that follows most convolutions) into extra full copies of the map in the backward.
    return torch.ops.aten._unsafe_view(out, (n, c_out, h_out, w_out))


def conv_transpose2d_by_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                             stride: tuple[int, int], padding: tuple[int, int], output_padding: tuple[int, int],
                             dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv_transpose2d`` (groups 1) as one matrix product + fold."""
    n, c_in, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    h_out = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    w_out = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    columns = torch.matmul(weight.reshape(c_in, -1).t(), x.reshape(n, c_in, h * w))  # N, C_out*kh*kw, H*W
    out = F.fold(columns, (h_out, w_out), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out
