"""3x3 and 4x4 stride-1 convolutions by Winograd's minimal filtering (a route of accelerator ``cpu_kernels``).

A 3x3 convolution over a 6x6 input tile gives a 4x4 output tile, F(4x4, 3x3); a 4x4 one (the
PatchGAN discriminators' stride-1 layers) a 3x3 output tile, F(3x3, 4x4). Winograd's algorithm
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes either with 36
multiplications instead of 144, after fixed linear transforms of the input tile (``B^T d B``), the
filter (``G g G^T``) and the product (``A^T m A``), built on the interpolation points 0, +-1, +-2 and
infinity. Over many channels the multiplications become 36 independent matrix products (output
channels x input channels x tiles), so the arithmetic of a layer drops 4x and the rest is
memory-bound transforms. The maths are those of the convolution; only the rounding differs (about
1e-5 relative in float32, as cuDNN's Winograd kernels; F(2x2, 3x3), tried first, rounds closer but
was no faster, and slower at 256 px: README.md).

Both gradients are the exact adjoint of the forward's transforms: the output gradient is carried
back through the output transform once, then one batched product with the filter's transform
gives the input gradient (through the input transform's adjoint, the overlapping tiles added up)
and one with the input's transform gives the weight gradient, the tiles summed inside the product.
The transformed input is recomputed in the backward rather than saved (it is 2.25x the input's
size), and every intermediate lives in a reused per-thread workspace. A backward that itself
builds a graph (a gradient penalty) goes through PyTorch's own kernels.

It pays for the wide layers (CycleGAN's ResNet blocks, a 256 px PatchGAN's 256 -> 512 channel layer)
and loses on thin ones (a 1-channel head); README.md has the measurements. Whether it pays for a
layer on the machine that trains is timed (:mod:`ganzoo_cpu_kernels.conv_routes`).
"""
from __future__ import annotations

import mmap
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganzoo_cpu_kernels.conv_backward import native_stride_one_grads, save_conv, saved_conv

#: Input tile side: every kernel size uses the interpolation points 0, +-1, +-2 and infinity.
SPAN = 6
POINTS = SPAN * SPAN
_FINITE_POINTS = (0, 1, -1, 2, -2)


class _Transforms:
    """The 2-D transforms of Winograd's F(m x m, r x r) with m + r - 1 = :data:`SPAN` (Lavin & Gray's
    construction). A 2-D transform X^T d X of a tile is kron(X^T, X^T) applied to the tile flattened
    row by row, so each transform is one matrix product over all tiles and channels. The input
    transform depends on the points only, so every kernel size shares :data:`_INPUT_2D`."""

    def __init__(self, kernel: int) -> None:
        self.kernel = kernel
        self.tile = SPAN + 1 - kernel
        # filter: each point's powers over the product of its distances to the other finite points
        filter_1d = torch.zeros(SPAN, kernel, dtype=torch.float64)
        for row, point in enumerate(_FINITE_POINTS):
            scale = 1.0
            for other in _FINITE_POINTS:
                if other != point:
                    scale *= point - other
            filter_1d[row] = torch.tensor([point ** k / scale for k in range(kernel)], dtype=torch.float64)
        filter_1d[-1, -1] = 1
        output_1d = torch.zeros(self.tile, SPAN)  # the product's polynomial read back at the points
        for row in range(self.tile):
            output_1d[row, :-1] = torch.tensor([float(point ** row) for point in _FINITE_POINTS])
        output_1d[-1, -1] = 1
        self.filter_2d = torch.kron(filter_1d, filter_1d)  # 36 x r^2, exact in float64, rounded once per dtype
        self.output_2d = torch.kron(output_1d, output_1d)  # m^2 x 36


_INPUT_1D = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                          [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float32)
_INPUT_2D = torch.kron(_INPUT_1D, _INPUT_1D)  # 36 x 36
#: Kernel side -> transforms: F(4x4, 3x3) and F(3x3, 4x4).
TRANSFORMS = {3: _Transforms(3), 4: _Transforms(4)}


# Per thread: a model may be run from several threads at once (two inference requests, a caller's
# own worker threads), and two backwards must not share buffers. A thread's buffers go with the thread.
_workspaces = threading.local()
_HUGE_PAGE = 2 * 1024 * 1024


def _mapped_buffer(size: int, dtype: torch.dtype) -> torch.Tensor:
    """``size`` elements of fresh anonymous memory, on huge pages where the OS grants them.

    Mapped on their own, outside the allocator's heap, which the step's activations share: taken
    from it afresh on every call, the intermediates fragmented it (a higher peak RSS of CycleGAN's
    step), and a mapping goes back to the OS as soon as its last tensor dies. Huge pages, because the
    transforms read and write their intermediates in rows 64-256 KiB apart; on 4 KiB pages those walks
    miss the TLB, and the layer ran markedly slower (README.md)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    length = size * itemsize + _HUGE_PAGE
    # private: Python maps anonymous memory shared by default, which Linux backs by shmem, without huge pages
    region = (mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
              if hasattr(mmap, "MAP_PRIVATE") else mmap.mmap(-1, length))
    raw = torch.frombuffer(region, dtype=torch.uint8)  # the tensor keeps the mapping alive
    offset = -raw.data_ptr() % _HUGE_PAGE
    if hasattr(region, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        region.madvise(mmap.MADV_HUGEPAGE, offset, (len(region) - offset) // _HUGE_PAGE * _HUGE_PAGE)
    return raw[offset:offset + size * itemsize].view(dtype)


#: Elements added to each row of a workspace: rows a power of two apart (64-256 KiB here) all fall in
#: the same cache sets, and the transforms read 16-36 of them at once.
_ROW_PAD = 16


def _workspace(role: str, shape: tuple[int, ...], like: torch.Tensor, row_dims: int = 1) -> torch.Tensor:
    """A reused buffer of this thread for one of the transforms' intermediates (several times a
    layer's maps), as ``shape``: its first ``row_dims`` dimensions index rows, each padded by
    :data:`_ROW_PAD`."""
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
        buffers.pop(role, None)  # the old buffer goes before the new one comes
        buffer = buffers[role] = _mapped_buffer(size, like.dtype)
    return buffer.as_strided((rows, cols), (stride, 1)).view(shape)


def _transformed_filter(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, r, r) -> (36, C_out, C_in) (a workspace)."""
    c_out, c_in, kernel = weight.shape[:3]
    transformed = _workspace("filter", (POINTS, c_out * c_in), weight)
    torch.mm(TRANSFORMS[kernel].filter_2d.to(weight.dtype), weight.reshape(c_out * c_in, kernel * kernel).t(),
             out=transformed)
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


def _tiles(padded_side: int, t: _Transforms) -> int:
    """Output tiles along a side of a tile-padded input."""
    return (padded_side - t.kernel + 1) // t.tile


def _tile_padded(x: torch.Tensor, t: _Transforms) -> tuple[torch.Tensor, int, int]:
    """``x`` (unpadded for the convolution) with zero rows/columns added until the valid output's
    sides are multiples of the tile, and the valid output's true height and width."""
    h_out, w_out = x.shape[2] - t.kernel + 1, x.shape[3] - t.kernel + 1
    if h_out % t.tile or w_out % t.tile:
        x = F.pad(x, (0, -w_out % t.tile, 0, -h_out % t.tile))
    return x, h_out, w_out


#: Elements of the largest intermediate of one chunk (36 points x channels x tiles). The transforms
#: run over chunks of whole images, so that a batch's workspaces are those of its largest images:
#: in one piece, a discriminator's 512-channel layer at 256 px and batch 2 needed workspaces large
#: enough, mapped through the step's peak, to put the peak RSS of pix2pix's and BicycleGAN's steps
#: above the official code's. (Bands of tile rows would bound them further, but their smaller
#: products made that layer slower than whole images do: README.md.)
CHUNK_ELEMENTS = 1 << 22


def _chunks(n: int, tiles_h: int, tiles_w: int, channels: int) -> list[slice]:
    """The batch in runs of whole images, each under :data:`CHUNK_ELEMENTS` where one image is."""
    images = max(1, CHUNK_ELEMENTS // (POINTS * channels * tiles_h * tiles_w))
    return [slice(i, min(i + images, n)) for i in range(0, n, images)]


def _windows(x: torch.Tensor, t: _Transforms) -> torch.Tensor:
    """The overlapping 6x6 input tiles of a tile-padded ``x`` at the output tile's stride, as a view
    (N, C, tiles_h, tiles_w, 6, 6)."""
    return x.unfold(2, SPAN, t.tile).unfold(3, SPAN, t.tile)


def _transformed_input(windows: torch.Tensor) -> torch.Tensor:
    """Images of :func:`_windows` (n, C, tiles_h, tiles_w, 6, 6) -> (36, C, tiles), transformed (a workspace)."""
    n, c, tiles_h, tiles_w = windows.shape[:4]
    tiles = _workspace("tiles", (SPAN, SPAN, c, n, tiles_h, tiles_w), windows, row_dims=2)
    tiles.copy_(windows.permute(4, 5, 1, 0, 2, 3))
    transformed = _workspace("transformed_input", (POINTS, c * n * tiles_h * tiles_w), windows)
    torch.mm(_INPUT_2D.to(windows.dtype), tiles.view(POINTS, -1), out=transformed)
    return transformed.view(POINTS, c, n * tiles_h * tiles_w)


def _valid_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The unpadded ("valid") convolution of ``x`` with ``weight``."""
    t = TRANSFORMS[weight.shape[-1]]
    n, c_in, c_out, m = x.shape[0], x.shape[1], weight.shape[0], t.tile
    filter_t = _transformed_filter(weight)
    x, h_out, w_out = _tile_padded(x, t)
    tiles_h, tiles_w = _tiles(x.shape[2], t), _tiles(x.shape[3], t)
    windows = _windows(x, t)
    # The result owns its memory, never a workspace's, and is returned as that memory, not a view of it:
    # autograd would turn a later in-place op on a view (an inplace LeakyReLU) into extra full copies.
    out = x.new_empty(n, c_out, m * tiles_h, m * tiles_w)
    out_blocks = out.view(n, c_out, tiles_h, m, tiles_w, m)
    for images in _chunks(n, tiles_h, tiles_w, max(c_in, c_out)):
        count = images.stop - images.start
        products = _workspace("products", (POINTS, c_out, count * tiles_h * tiles_w), x)
        torch.bmm(filter_t, _transformed_input(windows[images]), out=products)
        blocks = _workspace("output_blocks", (m * m, products[0].numel()), x)
        torch.mm(t.output_2d.to(x.dtype), products.view(POINTS, -1), out=blocks)
        out_blocks[images] = blocks.view(m, m, c_out, count, tiles_h, tiles_w).permute(3, 2, 4, 0, 5, 1)
    return out if (h_out, w_out) == out.shape[2:] else out[:, :, :h_out, :w_out].contiguous()


def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride=1, padding=padding)`` for a 3x3 or 4x4 ``weight``, without autograd."""
    out = _valid_conv(_zero_padded(x, padding), weight)
    return out if bias is None else out.add_(bias.view(1, -1, 1, 1))


def _transformed_grad_out(grad_blocks: torch.Tensor, t: _Transforms) -> torch.Tensor:
    """Images of the tile-padded output gradient as blocks (n, C_out, tiles_h, m, tiles_w, m) carried
    back through the output transform: (36, C_out, tiles) (a workspace)."""
    n, c_out, tiles_h, m, tiles_w = grad_blocks.shape[:5]
    blocks = _workspace("output_blocks", (m, m, c_out, n, tiles_h, tiles_w), grad_blocks, row_dims=2)
    blocks.copy_(grad_blocks.permute(3, 5, 1, 0, 2, 4))
    transformed = _workspace("products", (POINTS, c_out * n * tiles_h * tiles_w), grad_blocks)
    torch.mm(t.output_2d.t().to(grad_blocks.dtype), blocks.view(m * m, -1), out=transformed)
    return transformed.view(POINTS, c_out, n * tiles_h * tiles_w)


GradOuts = Callable[[slice], torch.Tensor]  # images -> their transformed output gradient


def _grad_out_source(grad_blocks: torch.Tensor, chunks: list[slice], t: _Transforms) -> GradOuts:
    """The transformed output gradient by chunk of images. Where the batch is one chunk, one
    transform serves both gradients (neither writes its workspace, "products"); else each chunk's is
    made when asked, and made again for the second gradient."""
    if len(chunks) == 1:
        whole = _transformed_grad_out(grad_blocks, t)
        return lambda images: whole
    return lambda images: _transformed_grad_out(grad_blocks[images], t)


def _weight_grad(windows: torch.Tensor, grad_outs: GradOuts, c_out: int, chunks: list[slice], t: _Transforms
                 ) -> torch.Tensor:
    """The weight gradient from the input's tiles and the transformed output gradient: the adjoint
    of the forward's transforms, the tiles summed inside the batched products."""
    c_in, r = windows.shape[1], t.kernel
    grad_filter_t = _workspace("filter", (POINTS, c_out, c_in), windows)
    for i, images in enumerate(chunks):
        grad_t = grad_outs(images)
        input_t = _transformed_input(windows[images]).transpose(1, 2)
        if i == 0:
            torch.bmm(grad_t, input_t, out=grad_filter_t)
        else:
            grad_filter_t.baddbmm_(grad_t, input_t)
    grad = _workspace("filter_grad", (r * r, c_out * c_in), windows)
    torch.mm(t.filter_2d.t().to(windows.dtype), grad_filter_t.view(POINTS, c_out * c_in), out=grad)
    # a copy into the weights' layout (reshape could return a workspace view); faster than one
    # product written in that layout
    return grad.t().contiguous().view(c_out, c_in, r, r)


def _input_grad(grad_outs: GradOuts, weight: torch.Tensor, padded_shape: torch.Size, chunks: list[slice],
                t: _Transforms) -> torch.Tensor:
    """The gradient of the tile-padded input (``padded_shape``) from the transformed output gradient:
    the forward's product and input transform run backwards, then the overlapping tiles added up."""
    n, c_in, hp, wp = padded_shape
    m = t.tile
    tiles_h, tiles_w = _tiles(hp, t), _tiles(wp, t)
    filter_t = _transformed_filter(weight).transpose(1, 2)
    grad = weight.new_zeros(n, c_in, hp, wp)
    for images in chunks:
        grad_t = grad_outs(images)
        grad_input_t = _workspace("transformed_input", (POINTS, c_in, grad_t.shape[2]), weight)
        torch.bmm(filter_t, grad_t, out=grad_input_t)
        grad_tiles = _workspace("tiles", (SPAN, SPAN, c_in, images.stop - images.start, tiles_h, tiles_w), weight,
                                row_dims=2)
        torch.mm(_INPUT_2D.t().to(weight.dtype), grad_input_t.view(POINTS, -1), out=grad_tiles.view(POINTS, -1))
        for i in range(SPAN):  # neighbouring tiles overlap by r - 1 rows and columns: add each tile position in place
            rows = grad[images, :, i:i + m * tiles_h:m]
            for j in range(SPAN):
                rows[:, :, :, j:j + m * tiles_w:m].add_(grad_tiles[i, j].transpose(0, 1))
    return grad


class WinogradConv2d(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, stride=1, padding)`` for 3x3 or 4x4 filters, forward and gradients by Winograd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
        save_conv(ctx, x, weight, bias, padding)
        return winograd_conv2d(x, weight, bias, padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, weight, needed = saved_conv(ctx)
        if torch.is_grad_enabled():  # create_graph=True
            return *native_stride_one_grads(grad_out, x, weight, ctx.has_bias, ctx.padding, needed), None
        need_x, need_w, need_b = needed
        ph, pw = ctx.padding
        t = TRANSFORMS[weight.shape[-1]]
        grad_out = grad_out.contiguous()
        grad_x = grad_w = grad_b = None
        padded, _, _ = _tile_padded(_zero_padded(x, (ph, pw)), t)
        tiles_h, tiles_w = _tiles(padded.shape[2], t), _tiles(padded.shape[3], t)
        m = t.tile
        if (m * tiles_h, m * tiles_w) != grad_out.shape[2:]:
            grad_out = F.pad(grad_out, (0, m * tiles_w - grad_out.shape[3], 0, m * tiles_h - grad_out.shape[2]))
        grad_blocks = grad_out.view(grad_out.shape[0], grad_out.shape[1], tiles_h, m, tiles_w, m)
        chunks = _chunks(x.shape[0], tiles_h, tiles_w, max(x.shape[1], weight.shape[0]))
        grad_outs = _grad_out_source(grad_blocks, chunks, t)
        if need_w:
            grad_w = _weight_grad(_windows(padded, t), grad_outs, weight.shape[0], chunks, t)
        if need_x:  # after the weight gradient: it overwrites the workspaces that one reads
            grad_x = _input_grad(grad_outs, weight, padded.shape, chunks, t)
            if grad_x.shape[2:] != x.shape[2:]:  # drop the padding's and the tiles' rows and columns
                grad_x = grad_x[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]].contiguous()
        if need_b:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None
