"""Time each gradient of stride-1 convolutions both ways: oneDNN's backward kernels against the
rewritten routes of ``ganzoo/layers/conv_backward.py`` (the input gradient as a forward convolution,
the weight gradient as shifted GEMMs). The size rules there come from this table.

    python benchmarks/conv_backward.py [--threads 2] [--shape N,C_IN,C_OUT,SIZE,KERNEL,PADDING ...]

SIZE is the input's height and width before padding. Without ``--shape`` it times the layers of the
benchmark recipes (CycleGAN's ResNet blocks, heads and PatchGAN layers, the 32 px shapes discriminators).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganzoo.layers import conv_backward
from ganzoo.layers.conv_backward import _StrideOneConv2d

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


class _AllRewritten:
    """Every gradient through the rewritten kernels while inside, whatever the size rules say."""

    def __enter__(self) -> None:
        self.saved = conv_backward.input_grad_by_forward_conv, conv_backward.weight_grad_by_gemms
        conv_backward.input_grad_by_forward_conv = conv_backward.weight_grad_by_gemms = lambda *args: True

    def __exit__(self, *exc: object) -> None:
        conv_backward.input_grad_by_forward_conv, conv_backward.weight_grad_by_gemms = self.saved


def time_shape(spec: str, repeats: int) -> str:
    n, c_in, c_out, size, kernel, padding = (int(v) for v in spec.split(","))
    out = size + 2 * padding - kernel + 1
    positions = n * out * out
    cells = []
    for wanted in ("input", "weight"):
        x = torch.randn(n, c_in, size, size, requires_grad=wanted == "input")
        w = torch.randn(c_out, c_in, kernel, kernel, requires_grad=wanted == "weight")
        target = x if wanted == "input" else w
        native_out = F.conv2d(x, w, None, 1, padding)
        rewritten_out = _StrideOneConv2d.apply(x, w, None, (padding, padding))
        grad = torch.randn_like(native_out)

        def rewritten() -> object:
            with _AllRewritten():
                return torch.autograd.grad(rewritten_out, target, grad, retain_graph=True)

        native_ms, rewritten_ms = _alternating_medians_ms(
            lambda: torch.autograd.grad(native_out, target, grad, retain_graph=True), rewritten, repeats)
        chosen = (conv_backward.input_grad_by_forward_conv(c_in, c_out, (kernel, kernel), positions)
                  if wanted == "input" else conv_backward.weight_grad_by_gemms(c_in, c_out, positions))
        cells.append(f"{native_ms:.2f} / {rewritten_ms:.2f} ({native_ms / rewritten_ms:.2f}x, "
                     f"{'rewritten' if chosen else 'oneDNN'})")
    return f"| {spec} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--shape", action="append", help="N,C_IN,C_OUT,SIZE,KERNEL,PADDING (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads; milliseconds, oneDNN / rewritten (speed-up, the route ganzoo takes)\n")
    print("| N,C_in,C_out,size,kernel,padding | input gradient | weight gradient |")
    print("|---|---|---|")
    for spec in args.shape or DEFAULT_SHAPES:
        print(time_shape(spec, args.repeats), flush=True)


if __name__ == "__main__":
    main()
