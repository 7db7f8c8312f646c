"""An exponential moving average of the generators' weights (``train.ema``).

GAN generators drift from step to step, so one checkpoint's samples can differ visibly from the
next one's. The average over recent steps (Karras et al., 2018; Yazici et al., 2019) is steadier
and usually better; it is kept beside the trained weights, never trained itself. The average
follows a bias-corrected EMA rule (as Adam corrects its moments; ``AveragedModel``'s weights):
the average weighs G's weights after update i by ``decay ** (n - i)``, normalised, so early in a run
it is an average of the steps seen so far rather than mostly the initial weights (with 0.999 the
plain rule still holds a fifth of them after 1500 steps). After a few thousand steps the two agree.

Checkpoints store it under ``"ema"`` (``{"decay", "networks": {name: state_dict}, "updates": {name: n}}``);
``ganzoo.load`` (and so ``ganzoo sample`` / ``ganzoo eval``) puts it in place of the trained weights
unless asked for the raw ones.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import CheckpointError
from ganzoo.training.checkpoint import load_network_state
from ganzoo.training.distributed import unwrap


def generator_names(model: nn.Module) -> list[str]:
    """The networks of ``model`` its class declares as generators (``network_kinds``)."""
    kinds = getattr(type(model), "network_kinds", {})
    return [name for name in model.networks if kinds.get(name) == "generator"]


def debiased_step(decay: float, k: int) -> float:
    """How far the average moves towards the new weights on its ``k``-th update: the bias-corrected
    EMA weight ``(1 - decay) / (1 - decay ** k)``: 1 on the first, 1/2 on the second (for decay
    near 1), ``1 - decay`` in the long run."""
    return (1 - decay) / (1 - decay**k)


class GeneratorEMA:
    """EMA copies of every generator of ``model``: ``update`` after each optimizer step.

    The count of updates is kept on the host, so an update never waits on the device.

    Args:
        model: a ganzoo model (``model.networks``, ``network_kinds``).
        decay: weight of the old average in each update, in (0, 1); 0.999 averages over about the
            last thousand steps (over all steps so far, early in a run).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.names = generator_names(model)
        self.averages = {name: copy.deepcopy(unwrap(model.networks[name])).requires_grad_(False)
                         for name in self.names}
        self.updates = {name: 0 for name in self.names}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, average in self.averages.items():
            self.updates[name] += 1
            step = debiased_step(self.decay, self.updates[name])
            current = unwrap(model.networks[name])
            pairs = list(zip(average.parameters(), current.parameters())) + \
                list(zip(average.buffers(), current.buffers()))
            floats = [(a, c) for a, c in pairs if torch.is_floating_point(a)]
            others = [(a, c) for a, c in pairs if not torch.is_floating_point(a)]
            if floats:
                # one fused lerp: sub, mul and add as three foreach calls would allocate two copies of the weights
                torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], step)
            if others:  # batch-norm counters take the newest value
                torch._foreach_copy_([a for a, _ in others], [c for _, c in others])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay,
                "networks": {name: avg.state_dict() for name, avg in self.averages.items()},
                "updates": dict(self.updates)}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        for name, average in self.averages.items():
            if name not in state.get("networks", {}):
                raise CheckpointError(f"{source} has no weight average of {name}",
                                      hint="the checkpoint was made by another recipe or ganzoo version")
            load_network_state(name, average, state["networks"][name], source)
            self.updates[name] = int(state.get("updates", {}).get(name, 1))

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The averaged weights in ``model``'s generators for the duration (sample grids, evaluation)."""
        saved = {name: {k: v.clone() for k, v in unwrap(model.networks[name]).state_dict().items()}
                 for name in self.names}
        try:
            for name, average in self.averages.items():
                unwrap(model.networks[name]).load_state_dict(average.state_dict())
            yield
        finally:
            for name, state in saved.items():
                unwrap(model.networks[name]).load_state_dict(state)


def apply_stored_average(model: nn.Module, payload: dict[str, Any], source: str) -> bool:
    """Load a checkpoint's weight averages into ``model``'s generators; False when it has none."""
    stored = payload.get("ema")
    if not stored:
        return False
    for name, state in stored.get("networks", {}).items():
        if name not in model.networks:
            raise CheckpointError(f"{source} has a weight average of {name}, a network this recipe lacks")
        load_network_state(name, unwrap(model.networks[name]), state, source)
    return True
