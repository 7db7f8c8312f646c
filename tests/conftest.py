"""Shared test fixtures: determinism, a small CPU thread count, and throwaway registrations.

Helpers shared by several test modules live in ``helpers.py``; test modules never import from one another.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import settings


from ganzoo.registry import list_components, registry

# Property tests draw the same examples on every run: a CI failure is reproducible at once and a
# green run is not a lucky draw. Explore new examples with HYPOTHESIS_PROFILE=explore.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

# The test machine has 2 cores; more threads only add contention between tiny ops.
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def temp_register() -> Iterator[Callable[..., Any]]:
    """``temp_register(kind, name, factory, **kw)`` registers a component removed after the test."""
    added: list[tuple[str, str]] = []

    def add(kind: str, name: str, factory: Callable[..., Any], **kwargs: Any) -> Any:
        entry = registry(kind).add(name, factory, **kwargs)
        added.append((kind, name))
        return entry

    yield add
    for kind, name in reversed(added):
        registry(kind).remove(name)


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """``torch_threads(n)`` sets torch's intra-op thread count; the count from before comes back after the test."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_registry() -> Iterator[None]:
    """Register the toy model and parts of ``helpers.TOYS`` for a module's tests (built-ins are imported first)."""
    from helpers import TOYS

    list_components()
    for kind, name, factory in TOYS:
        registry(kind).add(name, factory)
    yield
    for kind, name, _ in TOYS:
        registry(kind).remove(name)
