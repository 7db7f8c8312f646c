"""CycleGAN (Zhu et al., 2017): unpaired translation A <-> B kept honest by cycle consistency."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganzoo.errors import RecipeError
from ganzoo.models.base import ModelSpec, Option
from ganzoo.models.image_pool import ImagePool
from ganzoo.models.networks import run_stacked, set_requires_grad
from ganzoo.recipe.schema import ModelConfig, Recipe
from ganzoo.registry import register
from ganzoo.training.updates import Updater


@register("model", "cyclegan")
class CycleGAN(ModelSpec, nn.Module):
    """CycleGAN: G_A (A->B), G_B (B->A), D_A (judges B), D_B (judges A); GAN + cycle + identity."""

    network_kinds: ClassVar[dict[str, str]] = {"G_A": "generator", "G_B": "generator",
                                               "D_A": "discriminator", "D_B": "discriminator"}
    networks_needed: ClassVar[tuple[str, ...]] = ("G_A", "G_B", "D_A", "D_B")
    options: ClassVar[dict[str, Option]] = {
        "pool_size": Option(50, int, "generated images kept per discriminator (0: no pool)", minimum=0),
    }
    # identity is relative to the cycle weights, as in the official lambda_identity.
    loss_weights: ClassVar[dict[str, float]] = {"gan": 1.0, "cycle_A": 10.0, "cycle_B": 10.0, "identity": 0.5}
    default_gan_loss: ClassVar[str] = "lsgan"

    @classmethod
    def update_groups(cls, model: ModelConfig) -> dict[str, list[str]]:
        # One optimizer for both generators and one for both discriminators, as the official code has.
        return {"G": ["G_A", "G_B"], "D": ["D_A", "D_B"]}

    @classmethod
    def loss_names(cls, model: ModelConfig) -> list[str]:
        w = model.losses
        names = (["idt_A", "idt_B"] if w["identity"] > 0 else []) + (["gan_A", "gan_B"] if w["gan"] > 0 else [])
        names += [term for term in ("cycle_A", "cycle_B") if w[term] > 0] + ["G_total"]
        return names + (["D_A", "D_B"] if w["gan"] > 0 else [])

    @classmethod
    def check_recipe(cls, recipe: Recipe, networks: dict[str, nn.Module]) -> None:
        GA, GB = networks["G_A"], networks["G_B"]
        cls.expect_channels("model.networks.G_B.input_nc", GB.input_nc, GA.output_nc, "G_A's output (domain B)")
        cls.expect_channels("model.networks.G_B.output_nc", GB.output_nc, GA.input_nc, "domain A (G_A's input)")
        cls.expect_channels("model.networks.D_A.input_nc", networks["D_A"].input_nc, GA.output_nc, "domain B")
        cls.expect_channels("model.networks.D_B.input_nc", networks["D_B"].input_nc, GA.input_nc, "domain A")
        if recipe.model.losses["identity"] > 0 and GA.input_nc != GA.output_nc:
            raise RecipeError("model.losses.identity",
                              f"needs as many channels in A as in B (G_A maps {GA.input_nc} -> {GA.output_nc})",
                              hint="set model.losses.identity=0")

    def __init__(self, recipe: Recipe, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.assemble(recipe, device)
        seed, pool_size = recipe.train.seed, recipe.model.options.pool_size
        self.pools = {"A": ImagePool(pool_size, seed=seed + 1), "B": ImagePool(pool_size, seed=seed + 2)}

    def train_step(self, batch: dict[str, torch.Tensor], updater: Updater) -> dict[str, torch.Tensor]:
        """One official CycleGAN iteration: update both generators, then both discriminators."""
        w = self.weights
        real_A = batch["A"].to(self.device, non_blocking=True)
        real_B = batch["B"].to(self.device, non_blocking=True)
        GA, GB, DA, DB = (self.networks[n] for n in ("G_A", "G_B", "D_A", "D_B"))
        losses: dict[str, torch.Tensor] = {}

        set_requires_grad([DA, DB], False)
        with updater.autocast():
            # The official six generator calls, as three where samples are independent (instance
            # norm; run_stacked decides): fewer, larger convolutions, the same values.
            #   G_B: fake_A = G_B(B), idt_B = G_B(A)
            #   G_A: fake_B = G_A(A), idt_A = G_A(B), rec_B = G_A(fake_A)
            #   G_B: rec_A = G_B(fake_B)
            if w["identity"] > 0:
                fake_A, idt_B = run_stacked(GB, real_B, real_A)
                fake_B, idt_A, rec_B = run_stacked(GA, real_A, real_B, fake_A)
            else:
                fake_A = GB(real_B)
                fake_B, rec_B = run_stacked(GA, real_A, fake_A)
            rec_A = GB(fake_B)
            total = fake_B.new_zeros((), dtype=torch.float32)
            if w["identity"] > 0:
                losses["idt_A"] = F.l1_loss(idt_A.float(), real_B.float()) * w["cycle_B"]
                losses["idt_B"] = F.l1_loss(idt_B.float(), real_A.float()) * w["cycle_A"]
                total = total + w["identity"] * (losses["idt_A"] + losses["idt_B"])
            if w["gan"] > 0:
                losses["gan_A"] = self.criterion_gan(DA(fake_B), True, for_discriminator=False)
                losses["gan_B"] = self.criterion_gan(DB(fake_A), True, for_discriminator=False)
                total = total + w["gan"] * (losses["gan_A"] + losses["gan_B"])
            if w["cycle_A"] > 0:
                losses["cycle_A"] = F.l1_loss(rec_A.float(), real_A.float())
                total = total + w["cycle_A"] * losses["cycle_A"]
            if w["cycle_B"] > 0:
                losses["cycle_B"] = F.l1_loss(rec_B.float(), real_B.float())
                total = total + w["cycle_B"] * losses["cycle_B"]
        updater.update("G", total)
        losses["G_total"] = total

        if w["gan"] > 0:
            set_requires_grad([DA, DB], True)
            with updater.autocast():
                pool_B = self.pools["B"].query(fake_B)
                pool_A = self.pools["A"].query(fake_A)
                pred_fake, pred_real = run_stacked(DA, pool_B, real_B)
                losses["D_A"] = 0.5 * (self.criterion_gan(pred_fake, False) + self.criterion_gan(pred_real, True))
                pred_fake, pred_real = run_stacked(DB, pool_A, real_A)
                losses["D_B"] = 0.5 * (self.criterion_gan(pred_fake, False) + self.criterion_gan(pred_real, True))
            updater.update("D", losses["D_A"] + losses["D_B"])
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def sample(self, A: torch.Tensor, z: torch.Tensor | None = None, num_z: int = 1,
               direction: str = "AtoB") -> torch.Tensor:
        """G_A(A) (or G_B for ``direction="BtoA"``) as (N, 1, C, H, W)."""
        net = self.networks["G_A" if direction == "AtoB" else "G_B"]
        return net(A.to(self.device)).unsqueeze(1)

    @torch.no_grad()
    def visuals(self, batch: dict[str, torch.Tensor], z: torch.Tensor | None = None) -> list[torch.Tensor]:
        A, B = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_B = self.networks["G_A"](A)
        fake_A = self.networks["G_B"](B)
        return [A, fake_B, self.networks["G_B"](fake_B), B, fake_A, self.networks["G_A"](fake_A)]

    def extra_state(self) -> dict[str, Any]:
        return {"pools": {name: pool.state_dict() for name, pool in self.pools.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for name, pool_state in state.get("pools", {}).items():
            self.pools[name].load_state_dict(pool_state, self.device)
