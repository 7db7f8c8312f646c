"""Reading a metric's pretrained weight file, with one clear line when it is not the file expected.

A user points ``--inception-weights`` / ``--lpips-weights`` (or ``train.eval_weights``) at a file;
a wrong one (a ganzoo checkpoint, another network's weights, a text file) gives a
:class:`MetricUnavailable` naming the file, what it holds and what was expected, never a raw
``KeyError`` or a ``load_state_dict`` error listing hundreds of keys.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from ganzoo.metrics.base import MetricUnavailable


def wrong_weights(path: str | os.PathLike[str], expected: str, holds: str) -> MetricUnavailable:
    """The error for a file that is not the weights ``expected`` describes (``holds``: what it is instead)."""
    return MetricUnavailable(f"{Path(path).name} is not {expected}: {holds} (file: {path})")


def _describe(state: Mapping[str, object], missing: list[str]) -> str:
    if "networks" in state and "recipe" in state:
        return "it is a ganzoo checkpoint (a trained model, not a metric's network)"
    tensors = [k for k, v in state.items() if isinstance(v, torch.Tensor)]
    if not tensors:
        shown = ", ".join(repr(k) for k in list(state)[:3])
        return f"it holds no tensors (keys {shown}{', ...' if len(state) > 3 else ''})"
    text = f"it holds {len(tensors)} tensor{'s' if len(tensors) != 1 else ''} named like {tensors[0]!r}"
    return text + (f", without {missing[0]!r}" if missing else "")


def read_state_dict(path: str | os.PathLike[str], expected: str,
                    required: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a weight file (read safely, on the CPU); a one-line MetricUnavailable when the file
    is unreadable, carries code, is not a mapping of tensors or lacks one of the ``required`` keys."""
    from ganzoo.errors import CheckpointError
    from ganzoo.training.checkpoint import read_tensor_file

    try:
        state = read_tensor_file(path, what="weight file")
    except CheckpointError as exc:
        if exc.message.startswith("refused"):
            holds = "it holds pickled Python objects beyond tensors, so it was not loaded (nothing in it ran)"
        elif "does not exist" in exc.message or "not a regular file" in exc.message:
            holds = "there is no such file"
        else:
            detail = exc.message.rsplit("(", 1)[-1].rstrip(")") if "(" in exc.message else ""
            holds = "it cannot be read as a PyTorch tensor file" + (f" ({detail})" if detail else "")
        raise wrong_weights(path, expected, holds) from None
    if not isinstance(state, Mapping):
        raise wrong_weights(path, expected, f"it holds a {type(state).__name__}, not a mapping of tensors")
    missing = [key for key in required if not isinstance(state.get(key), torch.Tensor)]
    if missing or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise wrong_weights(path, expected, _describe(state, missing))
    return dict(state)


__all__ = ["read_state_dict", "wrong_weights"]
