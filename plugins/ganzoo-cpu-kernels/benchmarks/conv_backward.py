"""Time the routes of accelerator ``cpu_kernels`` against PyTorch's own kernels, per layer shape.

    cd plugins/ganzoo-cpu-kernels
    python benchmarks/conv_backward.py [--threads 2] [--shape N,C_IN,C_OUT,SIZE,KERNEL,PADDING ...]
    python benchmarks/conv_backward.py --gemm [--shape KIND,N,C_IN,C_OUT,SIZE ...]

Without ``--gemm``: each gradient of a stride-1 convolution both ways, oneDNN's backward kernels
against ``ganzoo_cpu_kernels/conv_backward.py`` (the input gradient as a forward convolution, the
weight gradient as shifted GEMMs); SIZE is the input's side before padding. With ``--gemm``: forward
+ backward of 4x4 stride-2 convolutions (KIND ``c``) and transposed convolutions (``t``), oneDNN
against im2col + GEMM (``ganzoo_cpu_kernels/gemm_conv.py``). Training chooses each layer's route by
timing the routes itself (``ganzoo_cpu_kernels/conv_routes.py``); these tables show where each pays
on a machine. Without ``--shape`` they time the layers of ganzoo's benchmark recipes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the plugin folder, when not pip-installed

from ganzoo_cpu_kernels.conv_backward import StrideOneConv2d  # noqa: E402

DEFAULT_SHAPES = [
    "1,256,256,34,3,0", "2,256,256,34,3,0", "1,256,256,66,3,0", "2,256,256,66,3,0",  # ResNet blocks, 128/256 px
    "1,256,256,18,3,0", "2,128,128,34,3,0", "4,128,128,16,3,1", "1,512,512,16,3,1",
    "1,64,3,134,7,0", "2,32,3,66,7,0",  # generator image heads
    "1,256,512,32,4,1", "1,512,1,31,4,1", "1,128,256,32,4,1",  # PatchGAN stride-1 layers and head at 256 px
    "8,64,128,8,4,1", "8,128,1,7,4,1",  # the 32 px shapes discriminators
]


def _alternating_medians_ms(first: Callable[[], object], second: Callable[[], object], repeats: int
                            ) -> tuple[float, float]:
    """Median milliseconds of two calls, alternating, so that the machine's drift hits both alike."""
    for _ in range(2):
        first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def time_shape(spec: str, repeats: int) -> str:
    n, c_in, c_out, size, kernel, padding = (int(v) for v in spec.split(","))
    cells = []
    for wanted in ("input", "weight"):
        x = torch.randn(n, c_in, size, size, requires_grad=wanted == "input")
        w = torch.randn(c_out, c_in, kernel, kernel, requires_grad=wanted == "weight")
        target = x if wanted == "input" else w
        native_out = F.conv2d(x, w, None, 1, padding)
        rewritten_out = StrideOneConv2d.apply(x, w, None, (padding, padding), True, True)
        grad = torch.randn_like(native_out)
        native_ms, rewritten_ms = _alternating_medians_ms(
            lambda: torch.autograd.grad(native_out, target, grad, retain_graph=True),
            lambda: torch.autograd.grad(rewritten_out, target, grad, retain_graph=True), repeats)
        cells.append(f"{native_ms:.2f} / {rewritten_ms:.2f} ({native_ms / rewritten_ms:.2f}x)")
    return f"| {spec} | " + " | ".join(cells) + " |"


GEMM_DEFAULT_SHAPES = [  # unet_256 levels at batch 1, the 32 px shapes U-Net at batch 8, outer levels
    "c,1,256,512,32", "c,1,512,512,16", "c,1,512,512,8", "c,1,512,512,4", "c,1,512,512,2",
    "t,1,512,512,1", "t,1,1024,512,2", "t,1,1024,512,4", "t,1,1024,512,8", "t,1,1024,256,16", "t,1,128,3,128",
    "c,8,130,256,4", "t,8,512,128,2", "c,8,66,128,8", "t,8,256,64,4",
    "c,1,128,256,64", "c,1,64,128,128", "t,1,512,128,32", "t,1,256,64,64",
]


def time_gemm_shape(spec: str, repeats: int) -> str:
    from ganzoo_cpu_kernels.gemm_conv import conv2d_by_gemm, conv_transpose2d_by_gemm

    kind, *sizes = spec.split(",")
    n, c_in, c_out, size = (int(v) for v in sizes)
    x = torch.randn(n, c_in, size, size, requires_grad=True)
    if kind == "c":
        w = torch.randn(c_out, c_in, 4, 4, requires_grad=True)
        native = lambda: F.conv2d(x, w, None, 2, 1)  # noqa: E731
        gemm = lambda: conv2d_by_gemm(x, w, None, (2, 2), (1, 1), (1, 1))  # noqa: E731
    else:
        w = torch.randn(c_in, c_out, 4, 4, requires_grad=True)
        native = lambda: F.conv_transpose2d(x, w, None, 2, 1)  # noqa: E731
        gemm = lambda: conv_transpose2d_by_gemm(x, w, None, (2, 2), (1, 1), (0, 0), (1, 1))  # noqa: E731
    grad = torch.randn_like(native())
    native_ms, gemm_ms = _alternating_medians_ms(lambda: torch.autograd.grad(native(), (x, w), grad),
                                                 lambda: torch.autograd.grad(gemm(), (x, w), grad), repeats)
    return f"| {spec} | {native_ms:.2f} / {gemm_ms:.2f} ({native_ms / gemm_ms:.2f}x) |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--shape", action="append", help="N,C_IN,C_OUT,SIZE,KERNEL,PADDING (repeatable); "
                        "with --gemm: KIND,N,C_IN,C_OUT,SIZE")
    parser.add_argument("--gemm", action="store_true", help="time im2col + GEMM against oneDNN (forward + backward)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.gemm:
        print(f"{args.threads} threads; milliseconds forward + backward, oneDNN / GEMM (speed-up)\n")
        print("| kind,N,C_in,C_out,size | forward + backward |")
        print("|---|---|")
        for spec in args.shape or GEMM_DEFAULT_SHAPES:
            print(time_gemm_shape(spec, args.repeats), flush=True)
        return
    print(f"{args.threads} threads; milliseconds, oneDNN / rewritten (speed-up)\n")
    print("| N,C_in,C_out,size,kernel,padding | input gradient | weight gradient |")
    print("|---|---|---|")
    for spec in args.shape or DEFAULT_SHAPES:
        print(time_shape(spec, args.repeats), flush=True)


if __name__ == "__main__":
    main()
