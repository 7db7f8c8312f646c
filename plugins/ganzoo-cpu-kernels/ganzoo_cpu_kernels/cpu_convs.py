"""Convolution modules that take the fastest equivalent CPU formulation (accelerator ``cpu_kernels``).

:class:`TunedConv2d` and :class:`TunedConvTranspose2d` are ``nn.Conv2d`` and ``nn.ConvTranspose2d``
(same parameters, state-dict keys and results, float rounding aside) that, for float32 CPU tensors
in the default layout without autocast, compute each call by the route their
:class:`~ganzoo_cpu_kernels.conv_routes.RouteTable` holds for its signature, timed on this machine
the first time it is met (:mod:`ganzoo_cpu_kernels.conv_routes`). The routes:

- ``native``: PyTorch's own kernels (oneDNN);
- ``gemm``: im2col + one GEMM, or GEMM + fold for a transposed convolution
  (:mod:`ganzoo_cpu_kernels.gemm_conv`; pays where the weights outweigh the maps);
- ``winograd``: 3x3 and 4x4 stride-1 convolutions by Winograd's F(4x4, 3x3) and F(3x3, 4x4),
  forward and gradients
  (:mod:`ganzoo_cpu_kernels.winograd`);
- ``grad_x_by_conv``, ``grad_w_by_gemm``, ``grads_by_conv_and_gemm``: oneDNN's forward with the
  stride-1 input gradient as a forward convolution and/or the weight gradient as shifted GEMMs
  (:mod:`ganzoo_cpu_kernels.conv_backward`).

Every CUDA, half-precision, channels-last or autocast call takes PyTorch's own, and so does a module
without a table. The choice depends on the batch too: a data-parallel rank's share of the batch may
take another route than the whole batch would, which rounds differently.

:func:`use_tuned_cpu_convs` switches the convolutions of a model in place; the accelerator's
``prepare`` does, on the CPU only.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ganzoo_cpu_kernels import conv_routes
from ganzoo_cpu_kernels.conv_backward import StrideOneConv2d
from ganzoo_cpu_kernels.conv_routes import NATIVE, RouteTable
from ganzoo_cpu_kernels.gemm_conv import conv2d_by_gemm, conv_transpose2d_by_gemm
from ganzoo_cpu_kernels.winograd import TRANSFORMS as WINOGRAD_TRANSFORMS
from ganzoo_cpu_kernels.winograd import WinogradConv2d


def plain_cpu_float32(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a call may leave PyTorch's kernels: float32 CPU tensors in the default (NCHW)
    layout, no autocast."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.dim() == 4 and x.is_contiguous() and weight.is_contiguous()
            and not torch.is_autocast_enabled("cpu"))


def _columns_fit(columns: int, weight: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether the GEMM route's column matrix (``columns`` elements) is no larger than the weights or
    the input: where it is, the route loses anyway and would only add its size to the step's memory."""
    return columns <= max(weight.numel(), x.numel())


def _checked(route: str, module: nn.Module, x: torch.Tensor) -> str:
    """``route``, or native where it cannot compute this call (a hand-edited checkpoint's table)."""
    return route if route == NATIVE or route in module.routes(x) else NATIVE


def _signature(module: nn.Module, x: torch.Tensor) -> str:
    """What the fastest route depends on: the layer's sizes, the input's, which gradients are needed."""
    grads = "".join("1" if flag else "0" for flag in (
        torch.is_grad_enabled(), x.requires_grad, module.weight.requires_grad))
    return (f"{type(module).__name__[5:]} {module.in_channels}>{module.out_channels} k{module.kernel_size} "
            f"s{module.stride} p{module.padding} d{module.dilation} bias{int(module.bias is not None)} "
            f"x{tuple(x.shape)} grads{grads} threads{torch.get_num_threads()}")


def _timed_routes(module: nn.Module, x: torch.Tensor, routes: list[str],
                  run: Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
                  ) -> dict[str, Callable[[], object]]:
    """One callable per route that runs the call's forward, and its needed gradients, on detached
    copies of its tensors (so that nothing reaches the model's graph or gradients). The output
    gradient they use is drawn from a private generator: timing must not move the run's random
    stream, or a run that times its routes would draw other noise than one that read them."""
    probe_x = x.detach().requires_grad_(x.requires_grad)
    probe_w = module.weight.detach().requires_grad_(module.weight.requires_grad)
    probe_b = None if module.bias is None else module.bias.detach().requires_grad_(module.bias.requires_grad)
    needed = [t for t in (probe_x, probe_w, probe_b) if t is not None and t.requires_grad]
    if not torch.is_grad_enabled():
        needed = []
    grad_out: list[torch.Tensor] = []

    def timed(route: str) -> Callable[[], object]:
        def call() -> object:
            out = run(route, probe_x, probe_w, probe_b)
            if needed:
                if not grad_out:
                    generator = torch.Generator().manual_seed(0)
                    grad_out.append(torch.randn(out.shape, generator=generator, dtype=out.dtype))
                return torch.autograd.grad(out, needed, grad_out[0])
            return out
        return call

    return {route: timed(route) for route in routes}


def _by_fastest_route(module: nn.Module, table: RouteTable, x: torch.Tensor, flops: int) -> torch.Tensor:
    """The module's call on ``x`` by the route ``table`` has for its signature (timed now where it is due)."""
    timed = conv_routes.worth_timing(flops, module.weight.numel())
    route = table.choose(
        _signature(module, x), timed, lambda: _timed_routes(module, x, module.routes(x), module.run_route))
    return module.run_route(_checked(route, module, x), x, module.weight, module.bias)


class TunedConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed by the route measured fastest for each call's signature."""

    #: Where this layer's routes are chosen; set by :func:`use_tuned_cpu_convs` (None: PyTorch's kernels).
    route_table: RouteTable | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.route_table is None or not plain_cpu_float32(x, self.weight):
            return super().forward(x)
        return _by_fastest_route(self, self.route_table, x, self._flops(x))

    def _flops(self, x: torch.Tensor) -> int:
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.kernel_size, self.padding, self.stride, self.dilation
        h_out = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        w_out = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return 2 * self.weight.numel() * x.shape[0] * h_out * w_out

    def routes(self, x: torch.Tensor) -> list[str]:
        """The routes that compute this call (``native`` first)."""
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        routes = [NATIVE]
        if _columns_fit(self.in_channels * kh * kw * self._flops(x) // (2 * self.weight.numel()), self.weight, x):
            routes.append("gemm")
        stride_one = self.stride == (1, 1) and self.dilation == (1, 1)
        if stride_one and kh == kw and kh in WINOGRAD_TRANSFORMS and ph <= kh - 1 and pw <= kw - 1:
            routes.append("winograd")
        if stride_one and ph <= kh - 1 and pw <= kw - 1 and torch.is_grad_enabled():
            if x.requires_grad:
                routes.append("grad_x_by_conv")
            if self.weight.requires_grad:
                routes.append("grad_w_by_gemm")
            if x.requires_grad and self.weight.requires_grad:
                routes.append("grads_by_conv_and_gemm")
        return routes

    def run_route(self, route: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This convolution of ``x`` computed by ``route`` (one of :meth:`routes`)."""
        if route == "gemm":
            return conv2d_by_gemm(x, weight, bias, self.stride, self.padding, self.dilation)
        if route == "winograd":
            return WinogradConv2d.apply(x, weight, bias, self.padding)
        if route in ("grad_x_by_conv", "grad_w_by_gemm", "grads_by_conv_and_gemm"):
            return StrideOneConv2d.apply(x, weight, bias, self.padding, route != "grad_w_by_gemm",
                                         route != "grad_x_by_conv")
        return self._conv_forward(x, weight, bias)


class TunedConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` computed by the route measured fastest for each call's signature."""

    #: Where this layer's routes are chosen; set by :func:`use_tuned_cpu_convs` (None: PyTorch's kernels).
    route_table: RouteTable | None = None

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.route_table is None or output_size is not None or not plain_cpu_float32(x, self.weight):
            return super().forward(x, output_size)
        flops = 2 * self.weight.numel() * x.shape[0] * x.shape[2] * x.shape[3]
        return _by_fastest_route(self, self.route_table, x, flops)

    def routes(self, x: torch.Tensor) -> list[str]:
        """The routes that compute this call (``native`` first)."""
        columns = self.out_channels * self.kernel_size[0] * self.kernel_size[1] * x.shape[0] * x.shape[2] * x.shape[3]
        return [NATIVE, "gemm"] if _columns_fit(columns, self.weight, x) else [NATIVE]

    def run_route(self, route: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This transposed convolution of ``x`` computed by ``route`` (one of :meth:`routes`)."""
        if route == "gemm":
            return conv_transpose2d_by_gemm(x, weight, bias, self.stride, self.padding, self.output_padding,
                                            self.dilation)
        return nn.functional.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding,
                                              self.groups, self.dilation)


def _tuned_class(module: nn.Module) -> type[nn.Module] | None:
    """The tuned class for ``module``, or None where it must stay as it is (subclasses with their own
    forward, groups, non-zero padding modes, string paddings)."""
    if type(module) in (nn.Conv2d, TunedConv2d):
        tuned: type[nn.Module] = TunedConv2d
    elif type(module) in (nn.ConvTranspose2d, TunedConvTranspose2d):
        tuned = TunedConvTranspose2d
    else:
        return None
    if module.groups != 1 or module.padding_mode != "zeros" or not isinstance(module.padding, tuple):
        return None
    return tuned


def use_tuned_cpu_convs(module: nn.Module, table: RouteTable) -> int:
    """Switch every eligible ``nn.Conv2d`` / ``nn.ConvTranspose2d`` inside ``module`` to its tuned
    class, in place (parameters and state-dict keys unchanged), choosing its routes in ``table``.
    Returns how many were switched (tuned ones already switched count, and take ``table``)."""
    switched = 0
    for child in module.modules():
        tuned = _tuned_class(child)
        if tuned is not None:
            child.__class__ = tuned
            child.route_table = table
            switched += 1
    return switched

