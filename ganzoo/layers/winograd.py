"""3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3) (part of ``train.tuned_cpu_convs``).

A 3x3 convolution over a 6x6 input tile gives a 4x4 output tile. Winograd's algorithm (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016) computes it with 36 multiplications
instead of 144, after fixed linear transforms of the input tile (``B^T d B``), the filter (``G g G^T``)
and the product (``A^T m A``), built on the interpolation points 0, +-1, +-2 and infinity. Over many
channels the multiplications become 36 independent matrix products (output channels x input
channels x tiles), so the arithmetic of a layer drops 4x and the rest is memory-bound transforms.
The maths are those of the convolution; only the rounding differs (about 1e-5 relative in float32,
as cuDNN's Winograd kernels; F(2x2, 3x3), tried first, rounds 10x closer but was no faster at 128 px
and 1.3x slower at 256 px).

Both gradients are the exact adjoint of the forward's transforms: the output gradient is carried
back through the output transform once, then one batched product with the filter's transform
gives the input gradient (through the input transform's adjoint, the overlapping tiles added up)
and one with the input's transform gives the weight gradient, the tiles summed inside the product.
The transformed input is recomputed in the backward rather than saved (it is 2.25x the input's
size), and every intermediate lives in a reused per-thread workspace. A backward that itself
builds a graph (a gradient penalty) goes through PyTorch's own kernels.

Measured forward + backward against oneDNN on the 2-core AMD EPYC host (2 threads, best of 8-9): the
CycleGAN generator's ResNet blocks (256 channels, 32x32 maps) 1.31-1.41x at batch 1 and 1.46-1.56x at
batch 2; on 64x64 maps 1.72x. Whether it pays for a layer on the machine that trains is measured
(:mod:`ganzoo.layers.conv_routes`).
"""
from __future__ import annotations

import ctypes
import sys
import threading

import torch
import torch.nn.functional as F

from ganzoo.layers.conv_backward import native_stride_one_grads, save_conv, saved_conv

#: Output tile side, and input tile side (tile + kernel - 1).
TILE = 4
SPAN = TILE + 2
# The 1-D transforms. A 2-D transform X^T d X of a tile is kron(X^T, X^T) applied to the tile
# flattened row by row, so each transform is one matrix product over all tiles and channels.
_INPUT_T = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float32)
_FILTER = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_OUTPUT_T = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                         dtype=torch.float32)
_INPUT_2D = torch.kron(_INPUT_T, _INPUT_T)  # 36 x 36
_FILTER_2D = torch.kron(_FILTER, _FILTER)  # 36 x 9, exact in float64, rounded once per dtype
_OUTPUT_2D = torch.kron(_OUTPUT_T, _OUTPUT_T)  # 16 x 36
POINTS = SPAN * SPAN


# Per thread: the model's parallel branches (``train.parallel_branches``) run two backwards at once.
_workspaces = threading.local()
_HUGE_PAGE = 2 * 1024 * 1024
_MADV_HUGEPAGE = 14


def _madvise_huge_pages(address: int, length: int) -> None:
    """Ask Linux for transparent huge pages over a fresh, untouched range (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(length), _MADV_HUGEPAGE)
    except (OSError, AttributeError):
        pass


def _huge_page_buffer(size: int, like: torch.Tensor) -> torch.Tensor:
    """``size`` elements on huge pages where the OS grants them. The transforms read and write their
    intermediates in rows 64-256 KiB apart; on 4 KiB pages those walks miss the TLB, and the layer
    ran 1.5x slower (CycleGAN's ResNet blocks at 128 px: 23-26 ms against 14-17 ms forward + backward,
    depending on which pages a process happened to get)."""
    slack = _HUGE_PAGE // like.element_size()
    raw = like.new_empty(size + slack)
    start = raw.data_ptr()
    aligned = -(-start // _HUGE_PAGE) * _HUGE_PAGE
    end = start + raw.numel() * raw.element_size()
    if sys.platform.startswith("linux") and end - aligned >= _HUGE_PAGE:
        _madvise_huge_pages(aligned, (end - aligned) // _HUGE_PAGE * _HUGE_PAGE)
    offset = (aligned - start) // like.element_size()
    return raw[offset:offset + size]


#: Elements added to each row of a workspace: rows a power of two apart (64-256 KiB here) all fall in
#: the same cache sets, and the transforms read 16-36 of them at once.
_ROW_PAD = 16


def _workspace(role: str, shape: tuple[int, ...], like: torch.Tensor, row_dims: int = 1) -> torch.Tensor:
    """A reused buffer for one of the transforms' intermediates, as ``shape``: its first ``row_dims``
    dimensions index rows, each padded by :data:`_ROW_PAD`. The intermediates are several times a
    layer's maps; allocated afresh on every call they fragment the heap between the step's
    long-lived activations (peak RSS of CycleGAN's step at 128 px: +250-400 MiB), reused they cost
    one buffer each."""
    rows = cols = 1
    for i, side in enumerate(shape):
        if i < row_dims:
            rows *= side
        else:
            cols *= side
    stride = cols + _ROW_PAD if row_dims else cols
    size = rows * stride
    buffers = _workspaces.__dict__
    buffer = buffers.get(role)
    if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype:
        buffers[role] = None  # the old buffer goes before the new one comes
        buffer = buffers[role] = _huge_page_buffer(size, like)
    return buffer.as_strided((rows, cols), (stride, 1)).view(shape)


def _transformed_filter(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (36, C_out, C_in) (a workspace)."""
    c_out, c_in = weight.shape[:2]
    transformed = _workspace("filter", (POINTS, c_out * c_in), weight)
    torch.mm(_FILTER_2D.to(weight.dtype), weight.reshape(c_out * c_in, 9).t(), out=transformed)
    return transformed.view(POINTS, c_out, c_in)


def _zero_padded(x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """``F.pad(x, (pw, pw, ph, ph))`` into a workspace."""
    ph, pw = padding
    if not (ph or pw):
        return x
    n, c, h, w = x.shape
    padded = _workspace("padded", (n, c, h + 2 * ph, w + 2 * pw), x, row_dims=0)
    padded.zero_()
    padded[:, :, ph:ph + h, pw:pw + w].copy_(x)
    return padded


def _tile_padded(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``x`` (unpadded for the convolution) with zero rows/columns added until the valid output's
    sides are multiples of the tile, and the valid output's true height and width."""
    h_out, w_out = x.shape[2] - 2, x.shape[3] - 2
    if h_out % TILE or w_out % TILE:
        x = F.pad(x, (0, -w_out % TILE, 0, -h_out % TILE))
    return x, h_out, w_out


def _transformed_input(x: torch.Tensor) -> torch.Tensor:
    """(N, C, Hp, Wp) with Hp - 2 and Wp - 2 multiples of the tile -> (36, C, N * tiles): overlapping
    6x6 tiles at stride 4, transformed (a workspace, valid until the next call)."""
    n, c, hp, wp = x.shape
    tiles_h, tiles_w = (hp - 2) // TILE, (wp - 2) // TILE
    tiles = _workspace("tiles", (SPAN, SPAN, c, n, tiles_h, tiles_w), x, row_dims=2)
    tiles.copy_(x.unfold(2, SPAN, TILE).unfold(3, SPAN, TILE).permute(4, 5, 1, 0, 2, 3))
    transformed = _workspace("transformed_input", (POINTS, c * n * tiles_h * tiles_w), x)
    torch.mm(_INPUT_2D.to(x.dtype), tiles.view(POINTS, -1), out=transformed)
    return transformed.view(POINTS, c, n * tiles_h * tiles_w)


def _valid_conv(x: torch.Tensor, filter_t: torch.Tensor) -> torch.Tensor:
    """The unpadded ("valid") 3x3 convolution of ``x`` with a transformed filter (36, C_out, C_in)."""
    n = x.shape[0]
    c_out = filter_t.shape[1]
    x, h_out, w_out = _tile_padded(x)
    tiles_h, tiles_w = (x.shape[2] - 2) // TILE, (x.shape[3] - 2) // TILE
    products = _workspace("products", (POINTS, c_out, n * tiles_h * tiles_w), x)
    torch.bmm(filter_t, _transformed_input(x), out=products)
    blocks = _workspace("output_blocks", (TILE * TILE, c_out * n * tiles_h * tiles_w), x)
    torch.mm(_OUTPUT_2D.to(x.dtype), products.view(POINTS, -1), out=blocks)
    out = x.new_empty(n, c_out, tiles_h, TILE, tiles_w, TILE)  # the result owns its memory, never a workspace's
    out.copy_(blocks.view(TILE, TILE, c_out, n, tiles_h, tiles_w).permute(3, 2, 4, 0, 5, 1))
    out = out.view(n, c_out, TILE * tiles_h, TILE * tiles_w)
    return out if (h_out, w_out) == out.shape[2:] else out[:, :, :h_out, :w_out].contiguous()


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride=1, padding=padding)`` for a 3x3 ``weight``, without autograd."""
    out = _valid_conv(_zero_padded(x, padding), _transformed_filter(weight))
    return out if bias is None else out.add_(bias.view(1, -1, 1, 1))


def _transformed_grad_out(grad_out: torch.Tensor, tiles_h: int, tiles_w: int) -> torch.Tensor:
    """The output gradient (N, C_out, H, W) carried back through the output transform:
    (36, C_out, N * tiles) (a workspace)."""
    n, c_out, h_out, w_out = grad_out.shape
    if (TILE * tiles_h, TILE * tiles_w) != (h_out, w_out):
        grad_out = F.pad(grad_out, (0, TILE * tiles_w - w_out, 0, TILE * tiles_h - h_out))
    blocks = _workspace("output_blocks", (TILE, TILE, c_out, n, tiles_h, tiles_w), grad_out, row_dims=2)
    blocks.copy_(grad_out.view(n, c_out, tiles_h, TILE, tiles_w, TILE).permute(3, 5, 1, 0, 2, 4))
    transformed = _workspace("products", (POINTS, c_out * n * tiles_h * tiles_w), grad_out)
    torch.mm(_OUTPUT_2D.t().to(grad_out.dtype), blocks.view(TILE * TILE, -1), out=transformed)
    return transformed.view(POINTS, c_out, n * tiles_h * tiles_w)


def _input_grad(grad_t: torch.Tensor, weight: torch.Tensor, padded_shape: torch.Size) -> torch.Tensor:
    """The gradient of the tile-padded input (``padded_shape``) from the transformed output gradient:
    the forward's product and input transform run backwards, then the overlapping tiles added up."""
    n, c_in, hp, wp = padded_shape
    tiles_h, tiles_w = (hp - 2) // TILE, (wp - 2) // TILE
    grad_input_t = _workspace("transformed_input", (POINTS, c_in, n * tiles_h * tiles_w), weight)
    torch.bmm(_transformed_filter(weight).transpose(1, 2), grad_t, out=grad_input_t)
    grad_tiles = _workspace("tiles", (SPAN, SPAN, c_in, n, tiles_h, tiles_w), weight, row_dims=2)
    torch.mm(_INPUT_2D.t().to(weight.dtype), grad_input_t.view(POINTS, -1), out=grad_tiles.view(POINTS, -1))
    grad = weight.new_zeros(n, c_in, hp, wp)
    for i in range(SPAN):  # tiles overlap by two rows and columns: add each tile position in place
        rows = grad[:, :, i:i + TILE * tiles_h:TILE]
        for j in range(SPAN):
            rows[:, :, :, j:j + TILE * tiles_w:TILE].add_(grad_tiles[i, j].transpose(0, 1))
    return grad


def _weight_grad(x: torch.Tensor, grad_t: torch.Tensor) -> torch.Tensor:
    """The weight gradient from the tile-padded input and the transformed output gradient: the
    adjoint of the forward's transforms, with the tiles summed inside one batched product."""
    c_out, c_in = grad_t.shape[1], x.shape[1]
    grad_filter_t = _workspace("filter", (POINTS, c_out, c_in), x)
    torch.bmm(grad_t, _transformed_input(x).transpose(1, 2), out=grad_filter_t)
    grad = _workspace("filter_grad", (9, c_out * c_in), x)
    torch.mm(_FILTER_2D.t().to(x.dtype), grad_filter_t.view(POINTS, c_out * c_in), out=grad)
    return grad.t().contiguous().view(c_out, c_in, 3, 3)  # a copy (reshape could return a workspace view)


class WinogradConv2d(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, stride=1, padding)`` for 3x3 filters, forward and gradients by Winograd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
        save_conv(ctx, x, weight, bias, padding)
        return winograd_conv3x3(x, weight, bias, padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, weight, needed = saved_conv(ctx)
        if torch.is_grad_enabled():  # create_graph=True
            return *native_stride_one_grads(grad_out, x, weight, ctx.has_bias, ctx.padding, needed), None
        need_x, need_w, need_b = needed
        ph, pw = ctx.padding
        grad_out = grad_out.contiguous()
        grad_x = grad_w = grad_b = None
        padded, _, _ = _tile_padded(_zero_padded(x, (ph, pw)))
        tiles_h, tiles_w = (padded.shape[2] - 2) // TILE, (padded.shape[3] - 2) // TILE
        grad_t = _transformed_grad_out(grad_out, tiles_h, tiles_w)
        if need_w:
            grad_w = _weight_grad(padded, grad_t)
        if need_x:  # after the weight gradient: it overwrites the workspaces that one reads
            grad_x = _input_grad(grad_t, weight, padded.shape)
            if grad_x.shape[2:] != x.shape[2:]:  # drop the padding's and the tiles' rows and columns
                grad_x = grad_x[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]].contiguous()
        if need_b:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None
