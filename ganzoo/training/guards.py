"""Two checks the trainer runs around a step, kept apart so they are tested on their own.

- :func:`nonfinite_buffers`: a NaN/inf in a *buffer* (batch norm's ``running_mean``/``running_var``)
  is as fatal as one in a loss, but no loss shows it: pix2pix at ``lr=1e10`` keeps finite losses
  while ``running_var`` becomes inf, and every later checkpoint and the weight average inherit it.
  The trainer checks the buffers after each step, with the same ``train.nonfinite`` policy as the
  losses (stop, or restore the step's snapshot and skip).
- :func:`check_memory`: a recipe that passes every bound can still ask for more memory than the
  machine has (``ngf: 1000000`` is 128 TB of parameters). The networks are built on the meta
  device while the recipe is resolved, so their size is known before one byte is allocated; this
  turns that into a RecipeError naming the network, instead of a MemoryError (or the OOM killer).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn

from ganzoo.errors import RecipeError


def nonfinite_buffers(networks: Mapping[str, nn.Module]) -> list[str]:
    """``network.buffer`` names of the floating-point buffers holding NaN or inf (empty when all are finite).

    One device synchronisation for all buffers together; names are only worked out on failure.
    """
    named = [(f"{net_name}.{buffer_name}", buffer) for net_name, net in networks.items()
             for buffer_name, buffer in net.named_buffers() if buffer.is_floating_point() and buffer.numel()]
    if not named:
        return []
    flags = torch.stack([torch.isfinite(buffer).all() for _, buffer in named])
    if bool(flags.all()):
        return []
    return [name for (name, _), ok in zip(named, flags.tolist()) if not ok]


#: Bytes per parameter while training with Adam in fp32: the weight, its gradient and two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def parameter_count(net: nn.Module) -> int:
    """Parameters of a network, also on the meta device (nothing is allocated)."""
    return sum(p.numel() for p in net.parameters())


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes this process could still allocate on ``device`` (None when it cannot be told)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # noqa: BLE001
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_training_bytes(networks: Mapping[str, nn.Module], batch_size: int, image_side: int,
                            channels: int = 6) -> dict[str, int]:
    """A lower bound of what training needs, by part: each network's parameters with gradients and
    Adam moments, and one batch of input images (``channels`` counts A and B together)."""
    parts = {name: parameter_count(net) * TRAINING_BYTES_PER_PARAMETER for name, net in networks.items()}
    parts["batch of images"] = int(batch_size) * int(channels) * int(image_side) ** 2 * 4
    return parts


def check_memory(networks: Mapping[str, nn.Module], *, batch_size: int, image_side: int, channels: int = 6,
                 available: int | None = None, device: torch.device | str = "cpu",
                 keys: Mapping[str, str] | None = None) -> None:
    """Raise a RecipeError when the lower bound of :func:`estimate_training_bytes` exceeds the memory
    available on ``device`` (``available`` overrides the measurement). The error names the largest
    part and its recipe key (``keys``: part -> key, default ``model.networks.<name>``)."""
    limit = available if available is not None else available_memory(device)
    if limit is None:
        return
    parts = estimate_training_bytes(networks, batch_size, image_side, channels)
    total = sum(parts.values())
    if total <= limit:
        return
    largest = max(parts, key=lambda k: parts[k])
    gib = 1 << 30
    key = (keys or {}).get(largest) or (f"model.networks.{largest}" if largest in networks else "data.crop_size")
    what = (f"{parameter_count(networks[largest]):,} parameters" if largest in networks
            else f"{batch_size} x {channels} x {image_side} x {image_side} values")
    raise RecipeError(key, f"needs at least {total / gib:,.1f} GiB to train ({largest}: {what}, "
                           f"{parts[largest] / gib:,.1f} GiB), but {torch.device(device).type} has "
                           f"{limit / gib:,.1f} GiB available",
                      hint="lower the widths (ngf/ndf/nef), the depth, the image size or the batch size")


def finite_tensors(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating tensor in ``tensors`` is finite (one synchronisation)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point() and t.numel()]
    return bool(torch.stack(flags).all()) if flags else True


__all__ = ["TRAINING_BYTES_PER_PARAMETER", "available_memory", "check_memory", "estimate_training_bytes",
           "finite_tensors", "nonfinite_buffers", "parameter_count"]
