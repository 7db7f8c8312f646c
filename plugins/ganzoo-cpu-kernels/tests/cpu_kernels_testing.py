"""Helpers of the cpu_kernels tests (importable from them: pytest puts this folder on sys.path)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ganzoo_cpu_kernels import cpu_convs
from ganzoo_cpu_kernels.conv_routes import RouteTable

#: Every route but PyTorch's own.
REWRITTEN_ROUTES = ["gemm", "winograd", "grad_x_by_conv", "grad_w_by_gemm", "grads_by_conv_and_gemm"]


def conv_pair(c_in: int, c_out: int, kernel: int, padding: int, table: RouteTable | None = None
              ) -> tuple[nn.Conv2d, nn.Conv2d]:
    """A tuned convolution (its routes in ``table``, default a fresh one) and an equal plain one."""
    torch.manual_seed(0)
    plain = nn.Conv2d(c_in, c_out, kernel, 1, padding)
    fast = copy.deepcopy(plain)
    assert cpu_convs.use_tuned_cpu_convs(fast, table or RouteTable()) == 1 and type(fast) is cpu_convs.TunedConv2d
    assert fast.state_dict().keys() == plain.state_dict().keys()
    return fast, plain
