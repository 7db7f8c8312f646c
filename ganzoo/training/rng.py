"""Seeding and capturing every random number generator a run uses, for exact resume."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain data (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured, on whatever machine this is.

    A checkpoint may come from a machine with another number of CUDA devices (or none): the CUDA
    generators present here take the stored states of the same index; stored states beyond the
    visible devices are ignored, and devices beyond the stored states keep their seeding. The CPU,
    Python and NumPy generators are restored in full, so a CPU run resumes exactly.
    """
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    restore_cuda_rng(state.get("cuda") or [])


def restore_cuda_rng(states: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> int:
    """Set the generators of the visible CUDA devices from ``states`` (by index); return how many were set."""
    if not torch.cuda.is_available():
        return 0
    count = min(len(states), torch.cuda.device_count())
    for index in range(count):
        torch.cuda.set_rng_state(states[index].cpu(), index)
    return count
