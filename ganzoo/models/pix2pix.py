"""pix2pix (Isola et al., 2017): one right answer, G(A) ~ B, judged by a conditional PatchGAN on (A, B)."""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganzoo.models.base import ModelSpec
from ganzoo.models.networks import run_stacked, set_requires_grad
from ganzoo.recipe.schema import ModelConfig, Recipe
from ganzoo.registry import register
from ganzoo.training.updates import Updater


@register("model", "pix2pix")
class Pix2Pix(ModelSpec, nn.Module):
    """pix2pix: generator G and conditional discriminator D on (A, B); GAN + lambda_L1 * L1."""

    network_kinds: ClassVar[dict[str, str]] = {"G": "generator", "D": "discriminator"}
    networks_needed: ClassVar[tuple[str, ...]] = ("G", "D")
    loss_weights: ClassVar[dict[str, float]] = {"gan": 1.0, "l1": 100.0}
    default_gan_loss: ClassVar[str] = "vanilla"

    @classmethod
    def check_recipe(cls, recipe: Recipe, networks: dict[str, nn.Module]) -> None:
        G, D = networks["G"], networks["D"]
        cls.expect_channels("model.networks.D.input_nc", D.input_nc, G.input_nc + G.output_nc,
                            "the (A, B) pair it judges")

    def __init__(self, recipe: Recipe, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.assemble(recipe, device)

    @classmethod
    def loss_names(cls, model: ModelConfig) -> list[str]:
        w = model.losses
        return (["D", "gan"] if w["gan"] > 0 else []) + (["l1"] if w["l1"] > 0 else []) + ["G_total"]

    def train_step(self, batch: dict[str, torch.Tensor], updater: Updater) -> dict[str, torch.Tensor]:
        """One official pix2pix iteration: update D on (A, G(A)) vs (A, B), then G."""
        w = self.weights
        A = batch["A"].to(self.device, non_blocking=True)
        B = batch["B"].to(self.device, non_blocking=True)
        G, D = self.networks["G"], self.networks["D"]
        losses: dict[str, torch.Tensor] = {}
        with updater.autocast():
            fake = G(A)
        fake_pair = torch.cat([A, fake], 1)

        if w["gan"] > 0:
            set_requires_grad([D], True)
            with updater.autocast():
                pred_fake, pred_real = run_stacked(D, fake_pair.detach(), torch.cat([A, B], 1))
                losses["D"] = 0.5 * (self.criterion_gan(pred_fake, False) + self.criterion_gan(pred_real, True))
            updater.update("D", losses["D"])

        set_requires_grad([D], False)
        with updater.autocast():
            total = fake.new_zeros((), dtype=torch.float32)
            if w["gan"] > 0:
                losses["gan"] = self.criterion_gan(D(fake_pair), True, for_discriminator=False)
                total = total + w["gan"] * losses["gan"]
            if w["l1"] > 0:
                losses["l1"] = F.l1_loss(fake.float(), B.float())
                total = total + w["l1"] * losses["l1"]
        updater.update("G", total)
        set_requires_grad([D], True)
        losses["G_total"] = total
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def sample(self, A: torch.Tensor, z: torch.Tensor | None = None, num_z: int = 1) -> torch.Tensor:
        """G(A) as (N, 1, C, H, W): pix2pix has one output per input."""
        return self.networks["G"](A.to(self.device)).unsqueeze(1)

    @torch.no_grad()
    def visuals(self, batch: dict[str, torch.Tensor], z: torch.Tensor | None = None) -> list[torch.Tensor]:
        A, B = batch["A"].to(self.device), batch["B"].to(self.device)
        return [A, B, self.networks["G"](A)]

