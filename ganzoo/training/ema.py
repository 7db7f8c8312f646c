"""An exponential moving average of the generators' weights (``train.ema``).

GAN generators drift from step to step, so one checkpoint's samples can differ visibly from the
next one's. The average over recent steps (Karras et al., 2018; Yazici et al., 2019) is steadier
and usually better; it is kept beside the trained weights, never trained itself. PyTorch's own
``AveragedModel`` with an EMA rule does the averaging.

Checkpoints store it under ``"ema"`` (``{"decay", "networks": {name: state_dict}, "updates": {name: n}}``);
``ganzoo.load`` (and so ``ganzoo sample`` / ``ganzoo eval``) puts it in place of the trained weights
unless asked for the raw ones.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ganzoo.errors import CheckpointError
from ganzoo.training.checkpoint import load_network_state
from ganzoo.training.distributed import unwrap


def generator_names(model: nn.Module) -> list[str]:
    """The networks of ``model`` its class declares as generators (``network_kinds``)."""
    kinds = getattr(type(model), "network_kinds", {})
    return [name for name in model.networks if kinds.get(name) == "generator"]


class GeneratorEMA:
    """EMA copies of every generator of ``model``: ``update`` after each optimizer step.

    Args:
        model: a ganzoo model (``model.networks``, ``network_kinds``).
        decay: weight of the old average in each update, in (0, 1); 0.999 averages over about the
            last thousand steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.names = generator_names(model)
        self.averages = {
            name: AveragedModel(unwrap(model.networks[name]), multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                use_buffers=True)
            for name in self.names
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, average in self.averages.items():
            average.update_parameters(unwrap(model.networks[name]))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay,
                "networks": {name: avg.module.state_dict() for name, avg in self.averages.items()},
                "updates": {name: int(avg.n_averaged) for name, avg in self.averages.items()}}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        for name, average in self.averages.items():
            if name not in state.get("networks", {}):
                raise CheckpointError(f"{source} has no weight average of {name}",
                                      hint="the checkpoint was made by another recipe or ganzoo version")
            load_network_state(name, average.module, state["networks"][name], source)
            average.n_averaged.fill_(int(state.get("updates", {}).get(name, 1)))

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The averaged weights in ``model``'s generators for the duration (sample grids, evaluation)."""
        saved = {name: {k: v.clone() for k, v in unwrap(model.networks[name]).state_dict().items()}
                 for name in self.names}
        try:
            for name, average in self.averages.items():
                unwrap(model.networks[name]).load_state_dict(average.module.state_dict())
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
