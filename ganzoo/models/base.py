"""What every model declares, so a recipe can be checked and resolved before anything is built.

A model is registered in the ``model`` registry and declares, as class attributes:

- ``options``: its own recipe keys under ``model.`` (``nz``, ``use_same_D``, ``pool_size``...),
  each an :class:`Option` with the official default;
- ``loss_weights``: its weighted loss terms (``model.losses.<term>``) with the official weights;
  a weight of 0 removes the term and its computation;
- ``required_networks(model_cfg)``: the network names it needs under ``model.networks``;
- ``optimizer_groups(model_cfg)``: its optimizers, each with the networks it updates (one per
  network unless the model says otherwise), so ``train.optimizers.<name>`` can change one of them;
- ``derived_network_args(model_cfg)``: arguments it passes to networks (``nz`` to G and E...),
  filled into the recipe when absent so ``ganzoo info`` shows them;
- ``check_recipe(recipe, networks)``: cross-checks (batch size, channels) raising RecipeError.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ganzoo.errors import RecipeError


@dataclass(frozen=True)
class Option:
    """One recipe key a model understands: its default, accepted type(s) and meaning."""

    default: Any
    type: type | tuple[type, ...]
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None


class ModelSpec:
    """Class-level declarations shared by all models (no training logic lives here)."""

    options: ClassVar[dict[str, Option]] = {}
    loss_weights: ClassVar[dict[str, float]] = {}
    networks_needed: ClassVar[tuple[str, ...]] = ()
    network_kinds: ClassVar[dict[str, str]] = {}
    default_gan_loss: ClassVar[str] = "lsgan"

    @classmethod
    def required_networks(cls, model_cfg: dict[str, Any]) -> list[str]:
        """Names that must appear under ``model.networks`` for this configuration."""
        return list(cls.networks_needed)

    @classmethod
    def optimizer_groups(cls, model_cfg: dict[str, Any]) -> dict[str, list[str]]:
        """Optimizer name -> the networks it updates (default: one optimizer per network)."""
        return {name: [name] for name in cls.required_networks(model_cfg)}

    @classmethod
    def derived_network_args(cls, model_cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Arguments the model itself gives its networks (``{"G": {"nz": 8}}``)."""
        return {}

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any], networks: dict[str, nn.Module]) -> None:
        """Raise :class:`RecipeError` for impossible combinations; ``networks`` are built on meta."""

    def assemble(self, recipe: dict[str, Any], device: torch.device | str) -> None:
        """Give a model (an ``nn.Module`` subclass) the parts every model has: its device, loss
        weights, the networks its configuration needs (built, initialised, on the device), the GAN
        criterion, the precision policy and the runner of independent step parts (``train.parallel_branches``)."""
        from ganzoo.models.assembly import build_networks
        from ganzoo.registry import build
        from ganzoo.training.branches import BranchRunner
        from ganzoo.training.precision import Precision

        model = recipe["model"]
        self.device = torch.device(device)
        self.full_weights: dict[str, float] = {**self.loss_weights, **model.get("losses", {})}
        self.loss_warmup: dict[str, int] = {term: steps for term, steps in (model.get("loss_warmup") or {}).items()
                                            if steps > 0}
        self.weights: dict[str, float] = dict(self.full_weights)
        self.set_step(0)
        self.networks = build_networks(model, self.required_networks(model), self.network_kinds).to(self.device)
        self.criterion_gan = build("gan_loss", model.get("gan_loss", self.default_gan_loss)).to(self.device)
        self.precision = Precision(recipe["train"].get("precision", "fp32"), self.device)
        self.branches = BranchRunner(recipe["train"].get("parallel_branches", True), self.device)

    def set_step(self, step: int) -> None:
        """Set ``self.weights`` for the update that follows ``step`` finished ones: a term named in
        ``model.loss_warmup`` with N steps weighs ``(step + 1) / N`` of its ``model.losses`` value
        until it reaches it, so even the first update has the term (a weight of 0 would skip it)."""
        for term, steps in self.loss_warmup.items():
            self.weights[term] = self.full_weights[term] * min(1.0, (step + 1) / steps)

    def make_optimizers(self, recipe: dict[str, Any]) -> None:
        """``self.optimizers``, one per :meth:`optimizer_groups` entry, from ``train.optimizer`` with
        the changes ``train.optimizers.<name>`` makes to that one (a faster discriminator, say)."""
        from ganzoo.models.assembly import make_optimizer

        train = recipe["train"]
        overrides = train.get("optimizers") or {}
        self.optimizers = {
            name: make_optimizer([p for net in nets for p in self.networks[net].parameters()],
                                 overrides.get(name, train["optimizer"]), self.device)
            for name, nets in self.optimizer_groups(recipe["model"]).items()
        }

    def drop_gradients(self) -> None:
        """Free every network's gradients of the last step. Each ``train_step`` starts with this
        rather than zeroing each group's just before its backward: the last step's gradients of a
        network updated later in the step would otherwise sit through an earlier group's backward,
        the step's peak of memory (pix2pix: G's 219 MB at unet_256 through D's update, with G's
        activations alive)."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def extra_state(self) -> dict[str, Any]:
        """Training state beyond networks and optimizers (grad scalers; CycleGAN adds its pools)."""
        return {"precision": self.precision.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.precision.load_state_dict(state.get("precision", {}))

    @staticmethod
    def expect_channels(key: str, got: int, expected: int, why: str) -> None:
        """Raise a RecipeError when a network's channel count does not fit what feeds it."""
        if got != expected:
            raise RecipeError(key, f"is {got}, but {why} has {expected} channels",
                              hint=f"set {key}={expected}")
