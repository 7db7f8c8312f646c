"""CUT and FastCUT (Park, Efros, Zhang and Zhu, ECCV 2020): unpaired translation by patchwise contrast.

One generator G (A -> B), one discriminator D (judges B) and the patch sampler F with its projection
heads. G's output must fool D (LSGAN) and, patch by patch, stay recognisable as its input: features of
G(A) at chosen layers of G's encoder (G applied to its own output) must each pick out the features of
A at the same location among the other locations of the image (PatchNCE). CUT adds the same term on B
-> G(B) (``nce_idt``, an identity regulariser); FastCUT drops it, weighs PatchNCE 10 times as much and
flips the inputs of half the steps horizontally, flipping G's features back (``flip_equivariance``).

The update order is the official ``optimize_parameters``: G's forward, D's update on it, then one
loss updating G and F together. F's heads are created in :meth:`CUT.materialize` (the official code
creates them in ``data_dependent_initialize`` on the first batch), before the optimizers exist.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn

from ganzoo import register
from ganzoo.errors import ComponentError, RecipeError
from ganzoo.layers import init_weights
from ganzoo.models.base import ModelSpec, Option
from ganzoo.models.networks import run_stacked, set_requires_grad
from ganzoo.recipe.schema import ModelConfig, Recipe
from ganzoo.training.updates import Updater

from ganzoo_cut.patchnce import patchnce_loss
from ganzoo_cut.sampler import PatchSampleMLP
from ganzoo_cut.taps import OFFICIAL_NCE_LAYERS, FeatureTaps, resolve_layers

CUT_OPTIONS: dict[str, Option] = {
    "nce_layers": Option(list(OFFICIAL_NCE_LAYERS), list,
                         "G layers PatchNCE compares: official layer indices of the ResNet generator (0: padded "
                         "input, 4 and 8: the down-sampling convs, 12 and 16: residual blocks 1 and 5) or module "
                         "names of G (\"model.4\")", item_type=(int, str)),
    "nce_idt": Option(True, bool, "PatchNCE on B -> G(B) too (identity; CUT on, FastCUT off)"),
    "flip_equivariance": Option(False, bool, "flip the inputs of half the steps and G's features back "
                                "(FastCUT on, CUT off)"),
    "num_patches": Option(256, int, "locations sampled per layer and image", minimum=1),
    "nce_T": Option(0.07, float, "temperature of PatchNCE", above=0.0),
    "netF": Option("mlp_sample", str, "F: mlp_sample (a 2-layer MLP head per layer) or sample (no heads)",
                   choices=("mlp_sample", "sample")),
    "netF_nc": Option(256, int, "width of F's heads", minimum=1),
    "nce_includes_all_negatives_from_minibatch": Option(
        False, bool, "negatives from every image of the batch, not only the query's own (single-image "
                     "translation)"),
}


@register("model", "cut")
class CUT(ModelSpec, nn.Module):
    """CUT: G (A->B), D (judges B) and patch heads F; GAN + PatchNCE on A->G(A) and B->G(B)."""

    network_kinds: ClassVar[dict[str, str]] = {"G": "generator", "D": "discriminator"}
    networks_needed: ClassVar[tuple[str, ...]] = ("G", "D")
    options: ClassVar[dict[str, Option]] = CUT_OPTIONS
    # The official lambda_GAN and lambda_NCE.
    loss_weights: ClassVar[dict[str, float]] = {"gan": 1.0, "nce": 1.0}
    default_gan_loss: ClassVar[str] = "lsgan"
    # The official defaults that differ from ganzoo's: xavier init, unpaired data, 200 + 200 epochs.
    recipe_defaults: ClassVar[dict[str, Any]] = {
        "model.init": {"type": "xavier", "gain": 0.02}, "data.dataset": "unaligned",
        "train.epochs": 200, "train.epochs_decay": 200}

    @classmethod
    def uses_heads(cls, model: ModelConfig) -> bool:
        """Whether F has parameters to train (PatchNCE on, MLP heads)."""
        return model.losses["nce"] > 0 and model.options.netF == "mlp_sample"

    @classmethod
    def update_groups(cls, model: ModelConfig) -> dict[str, list[str]]:
        # D first, then G and F from one loss (the official optimizer_G and optimizer_F).
        groups = {"D": ["D"], "G": ["G"]}
        if cls.uses_heads(model):
            groups["F"] = ["F"]
        return groups

    @classmethod
    def check_recipe(cls, recipe: Recipe, networks: dict[str, nn.Module]) -> None:
        model = recipe.model
        G, D = networks["G"], networks["D"]
        if G.nz:
            raise RecipeError("model.networks.G.nz", f"is {G.nz}, but CUT's generator takes no latent code",
                              hint="set model.networks.G.nz=0")
        cls.expect_channels("model.networks.D.input_nc", D.input_nc, G.output_nc, "G's output (domain B)")
        if model.losses["gan"] == 0 and model.losses["nce"] == 0:
            raise RecipeError("model.losses", "gan and nce are both 0, so G would learn nothing",
                              hint="set model.losses.gan or model.losses.nce above 0")
        if model.losses["nce"] == 0:
            return
        if model.options.nce_idt and G.input_nc != G.output_nc:
            raise RecipeError("model.nce_idt", f"needs as many channels in A as in B (G maps {G.input_nc} -> "
                              f"{G.output_nc}), since G also translates B", hint="set model.nce_idt=false")
        try:
            resolve_layers(G, list(model.options.nce_layers))
        except ComponentError as exc:
            raise RecipeError("model.nce_layers", exc.message, hint=exc.hint) from None

    def __init__(self, recipe: Recipe, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.assemble(recipe, device)
        options = recipe.model.options
        self.init = dict(recipe.model.init)
        self.nce_idt = bool(options.nce_idt)
        self.flip_equivariance = bool(options.flip_equivariance)
        self.num_patches = int(options.num_patches)
        self.nce_T = float(options.nce_T)
        self.netF_nc = int(options.netF_nc)
        self.use_mlp = options.netF == "mlp_sample"
        self.all_negatives = bool(options.nce_includes_all_negatives_from_minibatch)
        self.nce_on = self.full_weights["nce"] > 0
        self.taps = FeatureTaps(self.networks["G"], list(options.nce_layers)) if self.nce_on else None
        self.sampler: PatchSampleMLP | None = None  # made by materialize; networks["F"] when it has heads

    # -- F ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def materialize(self, batch: dict[str, torch.Tensor]) -> None:
        """Create F's heads, one per tapped layer, as wide as that layer, initialised like the networks.

        G runs once on one input image, in eval mode so that nothing it keeps (batch statistics) changes.
        """
        if not self.nce_on or self.sampler is not None:
            return
        G = self.networks["G"]
        was_training = G.training
        G.eval()
        try:
            feats = self.taps(G, batch["A"][:1].to(self.device))  # type: ignore[misc]
        finally:
            G.train(was_training)
        sampler = PatchSampleMLP([f.shape[1] for f in feats], self.netF_nc, use_mlp=self.use_mlp).to(self.device)
        init_weights(sampler, self.init.get("type", "normal"), self.init.get("gain", 0.02))
        if self.use_mlp:
            self.networks["F"] = sampler  # checkpointed, resumed, optimised and wrapped like G and D
        self.__dict__["sampler"] = sampler  # a reference, not a second submodule

    def _F(self) -> nn.Module:
        if self.sampler is None:
            raise RuntimeError("CUT's patch heads do not exist yet: call model.materialize(batch) before training "
                               "(ganzoo's Trainer and bench do)")
        return self.networks["F"] if self.use_mlp else self.sampler

    def nce_loss(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool) -> torch.Tensor:
        """PatchNCE between ``tgt`` = G(src) (queries) and ``src`` (keys), averaged over the layers,
        each layer's mean loss weighted by ``model.losses.nce`` (the official ``calculate_NCE_loss``)."""
        G, F = self.networks["G"], self._F()
        assert self.taps is not None
        feat_q = self.taps(G, tgt)
        if flipped:
            feat_q = [torch.flip(f, [3]) for f in feat_q]
        with torch.no_grad():  # the keys are detached in the loss: no graph for them
            feat_k = self.taps(G, src)
            keys, locations = F(feat_k, self.num_patches)
        queries, _ = F(feat_q, self.num_patches, locations)
        total = queries[0].new_zeros((), dtype=torch.float32)
        for q, k in zip(queries, keys):
            loss = patchnce_loss(q, k, tau=self.nce_T, images=src.shape[0],
                                 all_negatives_from_minibatch=self.all_negatives)
            total = total + (loss * self.weights["nce"]).mean()
        return total / len(queries)

    # -- training ---------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], updater: Updater) -> dict[str, torch.Tensor]:
        """One official CUT iteration: G's forward, D's update, then G and F's update."""
        w = self.weights
        real_A = batch["A"].to(self.device, non_blocking=True)
        real_B = batch["B"].to(self.device, non_blocking=True)
        G, D = self.networks["G"], self.networks["D"]
        n = real_A.shape[0]
        idt = self.nce_idt and self.nce_on
        # The official draw (np.random.random() < 0.5) from torch's CPU generator, which checkpoints keep.
        flipped = self.flip_equivariance and float(torch.rand(())) < 0.5
        losses: dict[str, torch.Tensor] = {}

        with updater.autocast():
            real = torch.cat([real_A, real_B]) if idt else real_A
            if flipped:
                real = torch.flip(real, [3])
            fake = G(real)
            fake_B = fake[:n]
            idt_B = fake[n:] if idt else None

        if w["gan"] > 0:
            with updater.autocast():
                pred_fake, pred_real = run_stacked(D, fake_B.detach(), real_B)
                losses["D_fake"] = self.criterion_gan(pred_fake, False)
                losses["D_real"] = self.criterion_gan(pred_real, True)
                loss_D = 0.5 * (losses["D_fake"] + losses["D_real"])
            updater.update("D", loss_D)
            losses["D"] = loss_D

        set_requires_grad([D], False)
        with updater.autocast():
            total = fake_B.new_zeros((), dtype=torch.float32)
            if w["gan"] > 0:
                losses["G_GAN"] = self.criterion_gan(D(fake_B), True, for_discriminator=False) * w["gan"]
                total = total + losses["G_GAN"]
            if self.nce_on:
                losses["NCE"] = self.nce_loss(real_A, fake_B, flipped)
                if idt:
                    assert idt_B is not None
                    losses["NCE_Y"] = self.nce_loss(real_B, idt_B, flipped)
                    total = total + 0.5 * (losses["NCE"] + losses["NCE_Y"])
                else:
                    total = total + losses["NCE"]
        updater.update(["G", "F"] if "F" in self.networks else "G", total)
        set_requires_grad([D], True)
        losses["G_total"] = total
        return {k: v.detach() for k, v in losses.items()}

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, A: torch.Tensor, z: torch.Tensor | None = None, num_z: int = 1) -> torch.Tensor:
        """G(A) as (N, 1, C, H, W)."""
        return self.networks["G"](A.to(self.device)).unsqueeze(1)

    @torch.no_grad()
    def visuals(self, batch: dict[str, torch.Tensor], z: torch.Tensor | None = None) -> list[torch.Tensor]:
        """real A, G(A), real B and, with ``nce_idt``, G(B) (the official visual_names)."""
        A, B = batch["A"].to(self.device), batch["B"].to(self.device)
        G = self.networks["G"]
        rows = [A, G(A), B]
        if self.nce_idt and G.input_nc == B.shape[1]:
            rows.append(G(B))
        return rows


@register("model", "fastcut")
class FastCUT(CUT):
    """FastCUT: CUT without the identity PatchNCE, PatchNCE x10, flip equivariance, 150 + 50 epochs."""

    options: ClassVar[dict[str, Option]] = {
        **CUT_OPTIONS,
        "nce_idt": Option(False, bool, "PatchNCE on B -> G(B) too (identity; CUT on, FastCUT off)"),
        "flip_equivariance": Option(True, bool, "flip the inputs of half the steps and G's features back "
                                    "(FastCUT on, CUT off)"),
    }
    loss_weights: ClassVar[dict[str, float]] = {"gan": 1.0, "nce": 10.0}
    recipe_defaults: ClassVar[dict[str, Any]] = {**CUT.recipe_defaults, "train.epochs": 150, "train.epochs_decay": 50}
