"""Accelerator plugins: the one hook through which a plugin may change *how* networks compute.

An accelerator is a class registered in the ``accelerator`` registry and named in the recipe's
``train.accelerators`` (``[cpu_kernels]`` or ``[{type: cpu_kernels, cache: null}]``). The core
itself swaps nothing; a plugin such as ``plugins/ganzoo-cpu-kernels`` may, for example, replace
convolution modules by faster equivalents on the CPU. The contract (see docs/plugins.md):

- ``prepare(model, recipe, device)`` runs once, after the model's networks are built and on their
  device and before any optimizer exists. It may change modules in place; the parameters must
  stay the same objects (optimizers, checkpoints and EMA refer to them).
- ``notice``: one line the Trainer prints at start-up, or None; an accelerator whose choices make
  two runs of one recipe differ must say so here.
- ``state_dict()`` / ``load_state_dict(state)``: plain data (strings, numbers, lists, mappings) kept in
  every checkpoint, so a resumed run computes as before.
- ``prepare_updater(updater)`` (optional): runs once, after the :class:`~ganzoo.training.updates.Updater`
  exists. It may set ``updater.run_independent``, how updates that share nothing (BicycleGAN's D and
  D2) run, e.g. side by side; nothing else.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
import torch.nn as nn

from ganzoo.errors import CheckpointError
from ganzoo.recipe.schema import Recipe
from ganzoo.registry import build

if TYPE_CHECKING:
    from ganzoo.training.updates import Updater


@runtime_checkable
class Accelerator(Protocol):
    """What ``train.accelerators`` entries are."""

    notice: str | None

    def prepare(self, model: nn.Module, recipe: Recipe, device: torch.device) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def build_accelerators(specs: Sequence[Mapping[str, Any]]) -> dict[str, Accelerator]:
    """The recipe's accelerators by name, built with their arguments."""
    built: dict[str, Accelerator] = {}
    for spec in specs:
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        built[spec["type"]] = build("accelerator", spec["type"], **kwargs)
    return built


def prepare_all(accelerators: Mapping[str, Accelerator], model: nn.Module, recipe: Recipe,
                device: torch.device) -> list[str]:
    """Let each accelerator prepare ``model``; returns the notices to show."""
    notices = []
    for accelerator in accelerators.values():
        accelerator.prepare(model, recipe, device)
        if getattr(accelerator, "notice", None):
            notices.append(str(accelerator.notice))
    return notices


def prepare_updaters(accelerators: Mapping[str, Accelerator], updater: Updater) -> None:
    """Let each accelerator that has the optional ``prepare_updater`` hook see the run's updater."""
    for accelerator in accelerators.values():
        hook = getattr(accelerator, "prepare_updater", None)
        if hook is not None:
            hook(updater)


def accelerator_states(accelerators: Mapping[str, Accelerator]) -> dict[str, dict[str, Any]]:
    return {name: accelerator.state_dict() for name, accelerator in accelerators.items()}


def load_accelerator_states(accelerators: Mapping[str, Accelerator], states: Mapping[str, Any], source: str) -> None:
    """Restore each accelerator's state from a checkpoint (one the checkpoint lacks starts afresh)."""
    for name, accelerator in accelerators.items():
        if name in states:
            try:
                accelerator.load_state_dict(dict(states[name]))
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"accelerator {name}'s state in {source} does not fit it: {exc}") from None
