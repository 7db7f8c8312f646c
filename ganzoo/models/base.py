"""What a model declares, so a recipe can be checked before anything is built and a Trainer can train it.

A model is an ``nn.Module`` registered in the ``model`` registry. It says *what* is optimised; the
Trainer's :class:`~ganzoo.training.updates.Updater` says *how* (autocast, backward, loss scaling,
the non-finite policy, updates inside the backward, data parallelism). It declares, as class
attributes and classmethods:

- ``options``: its own recipe keys under ``model.`` (``nz``, ``pool_size``...), each a
  :class:`~ganzoo.recipe.schema.Key` with the official default; resolved into ``recipe.model.options``;
- ``loss_weights``: its weighted loss terms (``model.losses.<term>``) with the official weights;
  a weight of 0 removes the term and its computation;
- ``network_kinds`` and ``required_networks(model)``: the networks under ``model.networks``;
- ``update_groups(model)``: its update groups in the official order, each with the networks it
  updates (one per network unless the model says otherwise); ``train.optimizers.<group>`` changes one;
- ``derived_network_args(model)``: arguments it passes to networks (``nz`` to G and E...);
- ``check_recipe(recipe, networks)``: cross-checks (batch size, channels) raising RecipeError;
- ``loss_names(model)`` (optional): the names ``train_step`` returns for this configuration, so a
  recipe watching one (``train.early_stop.watch``) is checked before training;

and implements ``train_step(batch, updater)``, ``sample``, ``visuals`` and, where it has training
state besides weights (CycleGAN's image pools), ``extra_state`` / ``load_extra_state``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn as nn

from ganzoo.errors import RecipeError
from ganzoo.models.networks import build_networks
from ganzoo.recipe.schema import Key, ModelConfig, Recipe
from ganzoo.registry import build

if TYPE_CHECKING:
    from ganzoo.training.updates import Updater

#: A model's own recipe key; the same declaration as the general keys'.
Option = Key


class ModelSpec:
    """Class-level declarations and the parts every model has (networks, loss weights, GAN criterion)."""

    options: ClassVar[dict[str, Key]] = {}
    loss_weights: ClassVar[dict[str, float]] = {}
    networks_needed: ClassVar[tuple[str, ...]] = ()
    network_kinds: ClassVar[dict[str, str]] = {}
    default_gan_loss: ClassVar[str] = "lsgan"
    batch_multiple: ClassVar[int] = 1  # what each process's batch must be a multiple of

    networks: nn.ModuleDict
    device: torch.device

    @classmethod
    def required_networks(cls, model: ModelConfig) -> list[str]:
        """Names that must appear under ``model.networks`` for this configuration."""
        return list(cls.networks_needed)

    @classmethod
    def update_groups(cls, model: ModelConfig) -> dict[str, list[str]]:
        """Update group -> the networks one optimizer updates (default: one group per network)."""
        return {name: [name] for name in cls.required_networks(model)}

    @classmethod
    def derived_network_args(cls, model: ModelConfig) -> dict[str, dict[str, Any]]:
        """Arguments the model itself gives its networks (``{"G": {"nz": 8}}``)."""
        return {}

    @classmethod
    def check_recipe(cls, recipe: Recipe, networks: dict[str, nn.Module]) -> None:
        """Raise :class:`RecipeError` for impossible combinations; ``networks`` are built on meta."""

    @classmethod
    def loss_names(cls, model: ModelConfig) -> list[str] | None:
        """The loss names ``train_step`` returns for this configuration (None: not declared; a watched
        name is then checked at the first log step instead of when the recipe is resolved)."""
        return None

    def assemble(self, recipe: Recipe, device: torch.device | str) -> None:
        """Give a model its device, loss weights, networks (built, initialised, on the device) and GAN criterion."""
        model = recipe.model
        self.device = torch.device(device)
        self.full_weights: dict[str, float] = dict(model.losses)
        self.loss_warmup: dict[str, int] = {term: steps for term, steps in model.loss_warmup.items() if steps > 0}
        self.weights: dict[str, float] = dict(self.full_weights)
        self.set_step(0)
        self.networks = build_networks(model.networks, model.init, self.required_networks(model),
                                       self.network_kinds).to(self.device)
        self.criterion_gan = build("gan_loss", model.gan_loss).to(self.device)

    def set_step(self, step: int) -> None:
        """Set ``self.weights`` for the update that follows ``step`` finished ones: a term named in
        ``model.loss_warmup`` with N steps weighs ``(step + 1) / N`` of its ``model.losses`` value
        until it reaches it, so even the first update has the term (a weight of 0 would skip it)."""
        for term, steps in self.loss_warmup.items():
            self.weights[term] = self.full_weights[term] * min(1.0, (step + 1) / steps)

    def train_step(self, batch: dict[str, torch.Tensor], updater: Updater) -> dict[str, torch.Tensor]:
        """One iteration of the official algorithm: compute each group's loss under ``updater.autocast()``
        and hand it to ``updater.update(group, loss)``, in order. Returns the detached loss terms."""
        raise NotImplementedError

    def materialize(self, batch: dict[str, torch.Tensor]) -> None:
        """Create parameters whose shapes depend on the data (lazy modules), before optimizers exist.

        :func:`~ganzoo.training.trainer.build_training` calls this once, right after the model is
        built and before the memory layout, accelerators, compilation, data-parallel wrapping and the
        optimizers, with a few training inputs (``ganzoo bench``: its synthetic batch). A network
        created here and put in ``self.networks`` (and named in ``update_groups``) is then treated
        like every other. ``ganzoo.load`` does not call it. The default has nothing to create."""

    def sample_codes(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """``n`` fixed latent codes for sample grids (None: the model takes no code)."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """Training state beyond networks and optimizers (CycleGAN adds its image pools)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    @staticmethod
    def expect_channels(key: str, got: int, expected: int, why: str) -> None:
        """Raise a RecipeError when a network's channel count does not fit what feeds it."""
        if got != expected:
            raise RecipeError(key, f"is {got}, but {why} has {expected} channels",
                              hint=f"set {key}={expected}")
