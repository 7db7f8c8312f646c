"""Each route computes PyTorch's convolution: results and gradients in float64, to rounding."""
from __future__ import annotations

import sys

import pytest
import torch

from ganzoo_cpu_kernels import winograd
from ganzoo_cpu_kernels.conv_backward import StrideOneConv2d
from ganzoo_cpu_kernels.gemm_conv import conv2d_by_gemm, conv_transpose2d_by_gemm
from ganzoo_cpu_kernels.winograd import _HUGE_PAGE, WinogradConv2d, _mapped_buffer

CONV_CASES = [  # (batch, in, out, size, kernel, padding, bias): GEMM weight path from 128 channels on
    (2, 128, 128, 6, (3, 3), (0, 0), True),  # a ResNet block's convolution after its reflection pad
    (1, 128, 256, 5, (4, 4), (1, 1), True),  # PatchGAN's stride-1 layer
    (2, 8, 16, 9, (3, 3), (1, 1), False),  # few channels: oneDNN keeps the weight gradient
    (1, 16, 1, 7, (4, 4), (1, 1), True),  # a one-channel PatchGAN head
    (2, 4, 3, 12, (7, 7), (0, 0), True),  # the ResNet generator's last layer
    (1, 130, 129, 4, (3, 1), (1, 0), False),  # non-square kernel and padding
]


@pytest.mark.parametrize("routes", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["both rewritten", "input by conv", "weights by gemm", "onednn"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[1]}to{c[2]}_k{c[4][0]}x{c[4][1]}_p{c[5][0]}{c[5][1]}")
def test_stride_one_conv_gradients_equal_autograd_in_float64(case: tuple, routes: tuple[bool, bool]) -> None:
    n, c_in, c_out, size, kernel, padding, bias = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, w) + ((b,) if bias else ())
    fast_out = StrideOneConv2d.apply(x, w, b, padding, *routes)
    plain_out = torch.nn.functional.conv2d(x, w, b, 1, padding)
    torch.testing.assert_close(fast_out, plain_out, rtol=0, atol=0)
    grad_out = torch.randn(plain_out.shape, generator=g, dtype=torch.float64)
    fast = torch.autograd.grad(fast_out, inputs, grad_out)
    plain = torch.autograd.grad(plain_out, inputs, grad_out)
    for name, f, p in zip(("input", "weight", "bias"), fast, plain):
        torch.testing.assert_close(f, p, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", [(3, 1, 5, 7, 9, 1, True), (3, 2, 3, 4, 8, 0, False), (3, 1, 4, 6, 7, 2, True),
                                  (3, 2, 6, 3, 12, 1, True), (3, 1, 2, 2, 5, 0, False),
                                  (4, 2, 5, 6, 8, 1, True), (4, 1, 3, 4, 9, 0, False), (4, 1, 4, 5, 7, 3, True),
                                  (4, 2, 3, 2, 6, 0, True), (4, 1, 2, 3, 10, 2, False)],
                         ids=["3x3_odd_p1", "3x3_even_p0", "3x3_odd_p2", "3x3_two_tiles", "3x3_one_tile",
                              "4x4_patchgan_p1", "4x4_two_tiles", "4x4_p3", "4x4_one_tile", "4x4_p2"])
@pytest.mark.parametrize("one_image_at_a_time", [False, True], ids=["whole_batch", "image_chunks"])
def test_winograd_convolution_and_gradients_equal_pytorchs_in_float64(
        case: tuple, one_image_at_a_time: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, n, c_in, c_out, size, padding, bias = case
    if one_image_at_a_time:  # the transforms' chunks of the batch, as a large layer's
        monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", 1)
        n += 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    fast = WinogradConv2d.apply(x, w, b, (padding, padding))
    plain = torch.nn.functional.conv2d(x, w, b, 1, padding)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    assert not fast._is_view()  # an in-place activation on a view costs autograd extra copies
    inputs = (x, w) + ((b,) if bias else ())
    grad_out = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    for f, p in zip(torch.autograd.grad(fast, inputs, grad_out), torch.autograd.grad(plain, inputs, grad_out)):
        torch.testing.assert_close(f, p, rtol=1e-12, atol=1e-12)


def test_winograd_workspaces_are_private_aligned_memory() -> None:
    """Shared anonymous memory (Python's mmap default) is shmem on Linux, which gets no huge pages."""
    buffer = _mapped_buffer(3 * 1024 * 1024, torch.float32)
    assert buffer.numel() == 3 * 1024 * 1024 and buffer.dtype == torch.float32
    assert buffer.data_ptr() % _HUGE_PAGE == 0
    buffer.fill_(1.5)
    assert buffer.sum().item() == 1.5 * buffer.numel()
    if sys.platform.startswith("linux"):
        address = buffer.data_ptr()
        for line in open("/proc/self/maps"):
            span, *rest = line.split()
            low, high = (int(v, 16) for v in span.split("-"))
            if low <= address < high:
                perms, path = rest[0], rest[4:]
                assert perms.endswith("p") and not path, line  # private, anonymous
                break
        else:
            raise AssertionError("workspace mapping not found")


def test_winograd_workspaces_are_per_thread() -> None:
    """Two threads running convolutions at once must not share intermediates."""
    import threading

    x = torch.randn(1, 4, 8, 8)
    w = torch.randn(4, 4, 3, 3)
    mine = winograd._workspace("tiles", (36, 16), x)
    theirs: list[torch.Tensor] = []
    worker = threading.Thread(target=lambda: theirs.append(winograd._workspace("tiles", (36, 16), x)))
    worker.start()
    worker.join()
    assert mine.data_ptr() != theirs[0].data_ptr()
    torch.testing.assert_close(winograd.winograd_conv2d(x, w, None, (1, 1)),
                               torch.nn.functional.conv2d(x, w, None, 1, 1), rtol=1e-4, atol=1e-4)


GEMM_CASES = [  # (transposed, batch, in, out, size, kernel, stride, padding, output_padding, dilation, bias)
    (False, 2, 6, 5, 8, 4, 2, 1, 0, 1, True),  # a U-Net down level
    (False, 1, 5, 7, 6, 3, 1, 1, 0, 1, False),
    (False, 2, 4, 3, 9, 3, 1, 2, 0, 2, True),  # dilated
    (True, 2, 6, 5, 4, 4, 2, 1, 0, 1, True),  # a U-Net up level
    (True, 1, 5, 3, 5, 3, 2, 1, 1, 1, True),  # the ResNet generator's upsampling (output_padding 1)
    (True, 2, 4, 4, 3, 3, 1, 0, 0, 2, False),
]


@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: f"{'T' if c[0] else 'C'}{c[1]}x{c[2]}to{c[3]}_s{c[6]}")
def test_gemm_convolutions_equal_pytorchs_in_float64(case: tuple) -> None:
    transposed, n, c_in, c_out, size, k, stride, padding, out_pad, dilation, bias = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    shape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
    w = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    pairs = (stride, stride), (padding, padding), (dilation, dilation)
    if transposed:
        gemm = conv_transpose2d_by_gemm(x, w, b, pairs[0], pairs[1], (out_pad, out_pad), pairs[2])
        plain = torch.nn.functional.conv_transpose2d(x, w, b, stride, padding, out_pad, 1, dilation)
    else:
        gemm = conv2d_by_gemm(x, w, b, *pairs)
        plain = torch.nn.functional.conv2d(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(gemm, plain, rtol=1e-12, atol=1e-12)
    assert not gemm._is_view()  # an in-place activation on a view costs autograd extra copies
    inputs = (x, w) + ((b,) if bias else ())
    grad_out = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    for f, p in zip(torch.autograd.grad(gemm, inputs, grad_out), torch.autograd.grad(plain, inputs, grad_out)):
        torch.testing.assert_close(f, p, rtol=1e-12, atol=1e-12)
