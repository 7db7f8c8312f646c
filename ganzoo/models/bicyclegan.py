"""BicycleGAN (Zhu et al., 2017): many right answers for one input.

Two branches share one generator G(A, z):

- **cVAE-GAN** (first half of the batch): B -> E -> z -> G(A, z) ~ B, trained with L1 to B, a KL
  term pulling E's posterior to N(0, I), and GAN on discriminator D.
- **cLR-GAN** (second half): z ~ N(0, I) -> G(A, z) -> E -> z', trained with GAN on D2 and the latent
  L1 |z' - z|, which updates G only, never E.

The official code applies the latent L1 with a second backward through G (``retain_graph``).
Here it is folded into the one backward of the G/E step by evaluating E on G's output with
*detached* parameters: gradients reach G through E's activations but never E's weights, exactly as
in the two-pass formulation (``tests/test_models.py`` proves the gradients are equal).

The paper's baselines are the same model with other weights (``recipes/bicyclegan_variants/``):
a zero weight removes its term, and E, D or D2 are built only when a term needs them. Two
switches exist only for baselines: ``l1_random`` (L1 from the random-z output to B, for
pix2pix+noise) and ``latent_trains_E`` (the latent L1 also trains E, for cLR-GAN, where E has no
other teacher).
"""
from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ganzoo.errors import RecipeError
from ganzoo.models.base import ModelSpec, Option
from ganzoo.models.networks import run_stacked, set_requires_grad
from ganzoo.recipe.schema import ModelConfig, Recipe
from ganzoo.registry import register
from ganzoo.training.updates import Updater


@register("model", "bicyclegan")
class BicycleGAN(ModelSpec, nn.Module):
    """BicycleGAN: cVAE-GAN + cLR-GAN with generator G, encoder E, discriminators D and D2."""

    network_kinds: ClassVar[dict[str, str]] = {"G": "generator", "E": "encoder", "D": "discriminator",
                                               "D2": "discriminator"}
    options: ClassVar[dict[str, Option]] = {
        "nz": Option(8, int, "length of the latent code z", minimum=1),
        "use_same_D": Option(False, bool, "one discriminator for both branches (no D2)"),
        "conditional_D": Option(False, bool, "discriminators see (A, B) pairs instead of B alone"),
        "latent_trains_E": Option(False, bool, "the latent L1 also updates E (cLR-GAN alone); BicycleGAN "
                                  "updates only G with it"),
        "kl_free_nats": Option(0.0, (int, float), "free bits against posterior collapse: KL below this many "
                               "nats per latent dimension (batch mean) is not penalised; 0 is the paper's KL",
                               minimum=0),
        "stack_branches": Option(False, bool, "G runs both branches as one batch even with batch norm, so its "
                                 "batch statistics span both halves: faster, not the official formulation "
                                 "(with per-sample norms the one call is exact and always used)"),
    }
    # l1_random (not in the paper's BicycleGAN): L1 from G(A, z_random) to B, which is pix2pix+noise.
    # mode_seeking (not in the paper; MSGAN, Mao et al. 2019): 1 / (|G(A,z1) - G(A,z2)| / |z1 - z2|).
    loss_weights: ClassVar[dict[str, float]] = {"gan": 1.0, "gan2": 1.0, "l1": 10.0, "latent": 0.5, "kl": 0.01,
                                                "l1_random": 0.0, "mode_seeking": 0.0}
    default_gan_loss: ClassVar[str] = "lsgan"
    batch_multiple: ClassVar[int] = 2  # every batch splits into a cVAE-GAN half and a cLR-GAN half
    recipe_defaults: ClassVar[dict[str, Any]] = {"model.init": {"type": "xavier", "gain": 0.02}}

    @classmethod
    def required_networks(cls, model: ModelConfig) -> list[str]:
        w, same_D = model.losses, model.options.use_same_D
        names = ["G"]
        if cls.uses_encoder(w):  # pix2pix+noise has no encoder
            names.append("E")
        if w["gan"] > 0 or (w["gan2"] > 0 and same_D):
            names.append("D")
        if w["gan2"] > 0 and not same_D:
            names.append("D2")
        return names

    @classmethod
    def update_groups(cls, model: ModelConfig) -> dict[str, list[str]]:
        # G and E first, then the discriminators, each with its own optimizer as in the official code
        return {name: [name] for name in cls.required_networks(model)}

    @classmethod
    def loss_names(cls, model: ModelConfig) -> list[str]:
        w = model.losses
        vae = model.networks.get("E", {}).get("vae", True) is not False
        terms = [t for t in ("gan", "gan2", "l1", "kl", "l1_random", "mode_seeking", "latent")
                 if w[t] > 0 and (t != "kl" or vae)]
        return terms + ["G_total"] + [name for name in cls.required_networks(model) if name in ("D", "D2")]

    @staticmethod
    def uses_encoder(weights: Any) -> bool:
        """Whether any term needs E: the encoded branch (gan, l1, kl) or the latent L1."""
        return any(weights[term] > 0 for term in ("gan", "l1", "kl", "latent"))

    @classmethod
    def derived_network_args(cls, model: ModelConfig) -> dict[str, dict[str, Any]]:
        nz = model.options.nz
        return {"G": {"nz": nz}, "E": {"nz": nz}}

    @classmethod
    def check_recipe(cls, recipe: Recipe, networks: dict[str, nn.Module]) -> None:
        options, batch_size = recipe.model.options, recipe.train.batch_size
        if batch_size % 2:
            raise RecipeError("train.batch_size",
                              f"is {batch_size}, but BicycleGAN splits every batch into a cVAE-GAN half "
                              "and a cLR-GAN half, so it must be even", hint="use 2 (the official setting) or 8")
        G, E = networks["G"], networks.get("E")
        nz = options.nz
        if G.nz != nz:
            raise RecipeError("model.networks.G.nz", f"is {G.nz}, but model.nz is {nz}")
        if E is not None and E.nz != nz:
            raise RecipeError("model.networks.E.nz", f"is {E.nz}, but model.nz is {nz}")
        if E is not None:
            cls.expect_channels("model.networks.E.input_nc", E.input_nc, G.output_nc, "the generator's output (B)")
            g_grid, e_grid = getattr(G, "z_grid", 1), getattr(E, "z_grid", 1)
            if g_grid != e_grid:
                raise RecipeError("model.networks.E.z_grid",
                                  f"is {e_grid}, but model.networks.G.z_grid is {g_grid}: E writes the code that G "
                                  "reads, so both must lay it out on the same grid", hint=f"set both to {g_grid}")
        d_in = G.output_nc + (G.input_nc if options.conditional_D else 0)
        for name in ("D", "D2"):
            if name in networks:
                cls.expect_channels(f"model.networks.{name}.input_nc", networks[name].input_nc, d_in,
                                    "what it judges ((A, B) pairs)" if options.conditional_D else "B")
        if recipe.model.losses["kl"] > 0 and not getattr(E, "vae", False):
            raise RecipeError("model.losses.kl", "is positive, but the encoder is a point estimate (vae: false)",
                              hint="set model.losses.kl=0 (cAE-GAN) or model.networks.E.vae=true")

    def __init__(self, recipe: Recipe, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.assemble(recipe, device)
        options = recipe.model.options
        self.nz: int = options.nz
        self.use_same_D: bool = options.use_same_D
        self.conditional_D: bool = options.conditional_D
        self.latent_trains_E: bool = options.latent_trains_E
        self.kl_free_nats: float = float(options.kl_free_nats)
        self.stack_branches: bool = options.stack_branches
        # The KL is a sum over the cVAE-GAN half of the batch, as in the official code. Computed as the
        # per-sample mean times the half of the *global* batch, it is that sum on one process and,
        # with the gradients averaged over data-parallel processes, the global batch's sum on several.
        self.kl_batch: int = recipe.train.batch_size // 2

    def net(self, name: str) -> nn.Module | None:
        return self.networks[name] if name in self.networks else None

    # -- the pieces of a step -------------------------------------------------------------------
    def _d_input(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.cat([A, B], 1) if self.conditional_D else B

    def _encode(self, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.networks["E"](B)
        if logvar is None:  # point-estimate encoder (cAE-GAN)
            return mu, mu, None
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return z, mu, logvar

    def _encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        """E's mean for ``images`` with E's weights treated as constants (gradients flow to the input only)."""
        E = self.networks["E"]
        frozen = {name: p.detach() for name, p in E.named_parameters()}
        frozen.update(dict(E.named_buffers()))
        mu, _ = functional_call(E, frozen, (images,))
        return mu

    def random_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.nz, device=self.device)

    def sample_codes(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.nz, generator=generator)

    def generator_objective(self, A_enc: torch.Tensor, B_enc: torch.Tensor
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor]:
        """The weighted G/E loss of both branches, ready for ONE backward pass.

        Returns (total, unweighted terms, G(A, E(B)) or None, G(A, z)). The cLR-GAN half reuses the
        cVAE-GAN inputs A, as the official code does; its real images are the other half of the batch.
        """
        w = self.weights
        G, D = self.networks["G"], self.net("D")
        D2 = D if self.use_same_D else self.net("D2")
        half = A_enc.shape[0]
        losses: dict[str, torch.Tensor] = {}
        z_rand = self.random_z(half)
        if w["gan"] > 0 or w["l1"] > 0 or w["kl"] > 0:
            z_enc, mu, logvar = self._encode(B_enc)
            fake_enc, fake_rand = run_stacked(G, (A_enc, z_enc), (A_enc, z_rand), always=self.stack_branches)
        else:
            mu = logvar = z_enc = fake_enc = None
            fake_rand = G(A_enc, z_rand)
        total = fake_rand.new_zeros((), dtype=torch.float32)
        if w["gan"] > 0:
            losses["gan"] = self.criterion_gan(D(self._d_input(A_enc, fake_enc)), True, for_discriminator=False)
            total = total + w["gan"] * losses["gan"]
        if w["gan2"] > 0:
            losses["gan2"] = self.criterion_gan(D2(self._d_input(A_enc, fake_rand)), True, for_discriminator=False)
            total = total + w["gan2"] * losses["gan2"]
        if w["l1"] > 0:
            losses["l1"] = F.l1_loss(fake_enc.float(), B_enc.float())
            total = total + w["l1"] * losses["l1"]
        if w["kl"] > 0 and logvar is not None:
            mu32, logvar32 = mu.float(), logvar.float()
            kl_per_dim = -0.5 * (1 + logvar32 - mu32.pow(2) - logvar32.exp())  # (N, nz)
            per_dim = kl_per_dim.mean(0)
            losses["kl"] = per_dim.sum() * self.kl_batch
            if self.kl_free_nats > 0:
                # Free bits (Kingma et al., 2016): a dimension's batch-mean KL under the allowance costs
                # nothing, so E can start carrying information before G has learnt to use it.
                per_dim = torch.clamp(per_dim, min=self.kl_free_nats)
            total = total + w["kl"] * per_dim.sum() * self.kl_batch
        if w["l1_random"] > 0:
            losses["l1_random"] = F.l1_loss(fake_rand.float(), B_enc.float())
            total = total + w["l1_random"] * losses["l1_random"]
        if w["mode_seeking"] > 0:
            losses["mode_seeking"] = self._mode_seeking(A_enc, fake_enc, z_enc, fake_rand, z_rand)
            total = total + w["mode_seeking"] * losses["mode_seeking"]
        if w["latent"] > 0:
            z_pred = self.networks["E"](fake_rand)[0] if self.latent_trains_E else self._encode_frozen(fake_rand)
            losses["latent"] = F.l1_loss(z_pred.float(), z_rand.float())
            total = total + w["latent"] * losses["latent"]
        return total, losses, fake_enc, fake_rand

    def _mode_seeking(self, A: torch.Tensor, fake_a: torch.Tensor | None, z_a: torch.Tensor | None,
                      fake_b: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """MSGAN's mode-seeking term for two outputs of the same inputs under codes ``z_a`` and ``z_b``.

        The step already has such a pair, G(A, E(B)) and G(A, z), so the term costs no extra pass of
        G; without the encoded branch a second random code is drawn. The codes are constants here:
        the term widens the outputs' spread, it never pulls the codes together.
        """
        if fake_a is None or z_a is None:
            z_a = self.random_z(fake_b.shape[0])
            fake_a = self.networks["G"](A, z_a)
        image_gap = torch.mean(torch.abs(fake_a.float() - fake_b.float()))
        code_gap = torch.mean(torch.abs(z_a.detach().float() - z_b.detach().float()))
        return 1.0 / (image_gap / code_gap + 1e-5)

    def train_step(self, batch: dict[str, torch.Tensor], updater: Updater) -> dict[str, torch.Tensor]:
        """One official BicycleGAN iteration: update G and E together, then D, then D2."""
        w = self.weights
        A = batch["A"].to(self.device, non_blocking=True)
        B = batch["B"].to(self.device, non_blocking=True)
        half = A.shape[0] // 2
        A_enc, B_enc, A_rand, B_rand = A[:half], B[:half], A[half:], B[half:]
        D = self.net("D")
        D2 = D if self.use_same_D else self.net("D2")

        # ---- G and E: one forward, one backward -------------------------------------------------
        set_requires_grad([D, D2], False)
        with updater.autocast():
            total, losses, fake_enc, fake_rand = self.generator_objective(A_enc, B_enc)
        updater.update([name for name in ("G", "E") if name in self.networks], total)
        losses["G_total"] = total

        # ---- discriminators on this step's fakes (detached), real images of each branch -------
        set_requires_grad([D, D2], True)
        judged: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"D": [], "D2": []}
        if w["gan"] > 0:
            judged["D"].append((self._d_input(A_enc, fake_enc.detach()), self._d_input(A_enc, B_enc)))
        if w["gan2"] > 0:
            judged["D" if self.use_same_D else "D2"].append(
                (self._d_input(A_enc, fake_rand.detach()), self._d_input(A_rand, B_rand)))
        # D and D2 share nothing: updated in turn, as in the official code, or side by side where an
        # accelerator runs independent updates so (the same maths)
        losses.update(updater.update_independent(
            {name: partial(self._discriminator_loss, self.networks[name], pairs) for name, pairs in judged.items()
             if pairs}))
        return {k: v.detach() for k, v in losses.items()}

    def _discriminator_loss(self, net: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``net``'s GAN loss over (fake, real) input pairs."""
        return sum(self._pair_loss(net, fake, real) for fake, real in pairs)  # type: ignore[return-value]

    def _pair_loss(self, net: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        pred_fake, pred_real = run_stacked(net, fake, real)
        return self.criterion_gan(pred_fake, False) + self.criterion_gan(pred_real, True)

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, A: torch.Tensor, z: torch.Tensor | None = None, num_z: int = 1) -> torch.Tensor:
        """``num_z`` outputs per input, shape (N, num_z, C, H, W); ``z`` (num_z, nz) is shared by all inputs."""
        G = self.networks["G"]
        A = A.to(self.device)
        if z is None:
            z = self.random_z(num_z)
        z = z.to(self.device)
        n, k = A.shape[0], z.shape[0]
        out = G(A.repeat_interleave(k, 0), z.repeat(n, 1))
        return out.view(n, k, *out.shape[1:])

    @torch.no_grad()
    def encode(self, B: torch.Tensor) -> torch.Tensor:
        """E's mean code for target images B."""
        if "E" not in self.networks:
            raise RecipeError("model.networks.E", "is not part of this model (no loss term uses an encoder, "
                              "as in pix2pix+noise), so target images cannot be encoded")
        mu, _ = self.networks["E"](B.to(self.device))
        return mu

    @torch.no_grad()
    def visuals(self, batch: dict[str, torch.Tensor], z: torch.Tensor) -> list[torch.Tensor]:
        """Rows of a sample grid: input, target, G(A, E(B)), then G(A, z_k) for each fixed z_k."""
        A, B = batch["A"].to(self.device), batch["B"].to(self.device)
        rows = [A, B]
        if "E" in self.networks:
            rows.append(self.networks["G"](A, self.encode(B)))
        samples = self.sample(A, z)
        rows += [samples[:, k] for k in range(samples.shape[1])]
        return rows

