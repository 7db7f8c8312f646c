"""The BicycleGAN paper's baselines as recipes (recipes/bicyclegan_variants/): one model, other weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganzoo.errors import RecipeError
from ganzoo.models import BicycleGAN
from ganzoo.recipe import prepare_recipe
from helpers import TINY, VARIANTS_DIR, parts_of, variant, variant_batch

COMMON = VARIANTS_DIR / "shapes_common.yaml"

# variant file -> (networks built, loss terms a training step reports)
EXPECTED = {
    "pix2pix_noise": ({"G", "D"}, {"gan2", "l1_random", "D"}),
    "cae_gan": ({"G", "E", "D"}, {"gan", "l1", "D"}),
    "cvae_gan": ({"G", "E", "D"}, {"gan", "l1", "kl", "D"}),
    "cvae_gan_pp": ({"G", "E", "D", "D2"}, {"gan", "gan2", "l1", "kl", "D", "D2"}),
    "clr_gan": ({"G", "E", "D2"}, {"gan2", "latent", "D2"}),
    "bicyclegan": ({"G", "E", "D", "D2"}, {"gan", "gan2", "l1", "kl", "latent", "D", "D2"}),
}


def params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_every_variant_file_is_shipped_with_a_one_line_description() -> None:
    shipped = {p.stem for p in VARIANTS_DIR.glob("*.yaml")} - {COMMON.stem}
    assert shipped == set(EXPECTED)
    for name in EXPECTED:
        first = (VARIANTS_DIR / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_variants_differ_from_the_common_recipe_only_in_weights_and_network_choices(name: str) -> None:
    common, recipe = prepare_recipe(COMMON), variant(name)
    assert recipe.data == common.data
    assert recipe.train == common.train
    assert recipe.log == common.log
    model, base = recipe.model.to_dict(), common.model.to_dict()
    allowed = {"losses", "networks", "use_same_D", "latent_trains_E"}
    assert {k for k in base if model.get(k) != base[k]} <= allowed
    assert set(model["networks"]) == EXPECTED[name][0]
    # A network a variant keeps is the common one, except the encoder's point-estimate switch.
    for net, spec in model["networks"].items():
        differing = {k for k in spec if spec[k] != base["networks"][net].get(k)}
        assert differing <= {"vae"}, (net, differing)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_variant_trains_one_step_with_its_own_terms(name: str) -> None:
    recipe = variant(name, TINY)
    parts = parts_of(recipe)
    model = parts.model
    assert set(model.networks) == EXPECTED[name][0]
    losses = parts.step(variant_batch())
    assert set(losses) == EXPECTED[name][1] | {"G_total"}
    assert all(torch.isfinite(v) for v in losses.values())
    rows = model.visuals(variant_batch(), torch.zeros(2, 4))
    assert len(rows) == (5 if "E" in model.networks else 4)  # A, B, [G(A, E(B))], two random z


def test_l1_random_is_the_l1_from_the_random_z_output_to_b() -> None:
    model = BicycleGAN(variant("pix2pix_noise", TINY))
    data = variant_batch()
    A_enc, B_enc = data["A"][:2], data["B"][:2]
    total, losses, fake_enc, fake_rand = model.generator_objective(A_enc, B_enc)
    assert fake_enc is None  # no encoded branch at all
    assert torch.allclose(losses["l1_random"], F.l1_loss(fake_rand, B_enc))
    expected = model.weights["gan2"] * losses["gan2"] + model.weights["l1_random"] * losses["l1_random"]
    assert torch.allclose(total, expected)
    with pytest.raises(RecipeError, match="model.networks.E"):
        model.encode(data["B"])


def test_l1_random_defaults_to_zero_so_bicyclegan_is_unchanged() -> None:
    assert BicycleGAN.loss_weights["l1_random"] == 0.0
    assert variant("bicyclegan").model.losses["l1_random"] == 0.0


def test_clr_gan_trains_its_encoder_with_the_latent_loss_and_bicyclegan_does_not() -> None:
    parts = parts_of(variant("clr_gan", TINY))
    before = params(parts.model.networks["E"])
    parts.step(variant_batch())
    assert any(not torch.equal(a, b) for a, b in zip(before, parts.model.networks["E"].parameters()))

    # The same weights with latent_trains_E off: E has no teacher and keeps its weights.
    frozen = parts_of(variant("clr_gan", [*TINY, "model.latent_trains_E=false"]))
    before = params(frozen.model.networks["E"])
    frozen.step(variant_batch())
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.model.networks["E"].parameters()))


def test_pix2pix_noise_builds_no_encoder_even_when_the_recipe_lists_one() -> None:
    recipe = variant("pix2pix_noise")
    assert "E" not in recipe.model.networks
    assert BicycleGAN.required_networks(recipe.model) == ["G", "D"]


def test_kl_with_a_point_estimate_encoder_is_refused() -> None:
    with pytest.raises(RecipeError, match="model.losses.kl"):
        variant("cae_gan", ["model.losses.kl=0.01"])
