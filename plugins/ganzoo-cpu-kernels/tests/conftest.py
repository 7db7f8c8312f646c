"""Shared fixtures of the cpu_kernels tests: the plugin importable, a fresh route table, forced routes.

Run with ``python -m pytest -q plugins/ganzoo-cpu-kernels/tests`` from the repository root (ganzoo's
own ``python -m pytest -q`` collects ``tests/`` only).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

PLUGIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PLUGIN))  # the plugin folder, when not pip-installed

from ganzoo_cpu_kernels import cpu_convs  # noqa: E402
from ganzoo_cpu_kernels.conv_routes import NATIVE, RouteTable  # noqa: E402

# The test machine has 2 cores; more threads only add contention between tiny ops.
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """``torch_threads(n)`` sets torch's intra-op thread count; the count from before comes back after the test."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture
def table() -> RouteTable:
    """A route table of its own, without a cache."""
    return RouteTable()


@pytest.fixture
def force_route(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """``force_route(route, everywhere=False)``: every tuned convolution takes ``route`` where it
    applies (else PyTorch's own) instead of timing the routes, so that tiny test shapes exercise each
    one. ``everywhere``: the GEMM route also where its column matrix would outgrow the weights and the
    input. Returns the list of the routes the calls then take, in order."""

    def force(route: str, everywhere: bool = False) -> list[str]:
        taken: list[str] = []

        def forced(self: RouteTable, signature: str, timed: bool, timed_routes: Any) -> str:
            taken.append(route if route in timed_routes() else NATIVE)
            return taken[-1]

        monkeypatch.setattr(RouteTable, "choose", forced)
        if everywhere:
            monkeypatch.setattr(cpu_convs, "_columns_fit", lambda *args: True)
        return taken

    return force

