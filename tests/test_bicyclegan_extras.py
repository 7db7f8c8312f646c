"""BicycleGAN options beyond the paper, all off by default: the mode-seeking term (MSGAN, Mao et al.
2019) and free bits on the KL (Kingma et al., 2016)."""
from __future__ import annotations

import pytest
import torch

from ganzoo.errors import RecipeError

from ganzoo.models import BicycleGAN
from helpers import TINY, parts_of, variant, variant_batch


def test_mode_seeking_is_off_by_default_so_the_official_objective_is_unchanged() -> None:
    assert BicycleGAN.loss_weights["mode_seeking"] == 0.0
    model = BicycleGAN(variant("bicyclegan", TINY))
    assert "mode_seeking" not in model.generator_objective(variant_batch()["A"][:2], variant_batch()["B"][:2])[1]


def test_mode_seeking_is_the_inverse_ratio_of_image_gap_to_code_gap() -> None:
    model = BicycleGAN(variant("bicyclegan", TINY))
    fake_a, fake_b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    z_a, z_b = torch.zeros(2, 4), torch.full((2, 4), 2.0)
    term = model._mode_seeking(variant_batch()["A"][:2], fake_a, z_a, fake_b, z_b)
    assert torch.allclose(term, torch.tensor(1.0 / (0.5 / 2.0 + 1e-5)))


def test_mode_seeking_joins_the_total_with_its_weight() -> None:
    data = variant_batch()
    A, B = data["A"][:2], data["B"][:2]
    model = BicycleGAN(variant("bicyclegan", [*TINY, "model.losses.mode_seeking=3.0"]))
    torch.manual_seed(0)
    with_term, losses, fake_enc, fake_rand = model.generator_objective(A, B)
    model.weights["mode_seeking"] = 0.0
    torch.manual_seed(0)
    without_term = model.generator_objective(A, B)[0]
    assert torch.isfinite(losses["mode_seeking"]) and losses["mode_seeking"] > 0
    # Same codes, same networks: the totals differ by the weighted term alone.
    assert torch.allclose(with_term - without_term, 3.0 * losses["mode_seeking"], rtol=1e-4)


def test_mode_seeking_without_an_encoder_draws_a_second_code() -> None:
    parts = parts_of(variant("pix2pix_noise", [*TINY, "model.losses.mode_seeking=1.0"]))
    losses = parts.step(variant_batch())
    assert "mode_seeking" in losses and torch.isfinite(losses["mode_seeking"])


def test_minimising_mode_seeking_pushes_outputs_for_different_codes_apart() -> None:
    torch.manual_seed(0)
    model = BicycleGAN(variant("pix2pix_noise", [*TINY, "model.losses.mode_seeking=1.0"]))
    G = model.networks["G"]
    A = variant_batch()["A"][:2]
    z_a, z_b = torch.randn(2, 4), torch.randn(2, 4)

    def gap() -> float:
        with torch.no_grad():
            return float(torch.mean(torch.abs(G(A, z_a) - G(A, z_b))))

    before = gap()
    optimizer = torch.optim.SGD(G.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        model._mode_seeking(A, G(A, z_a), z_a, G(A, z_b), z_b).backward()
        optimizer.step()
    assert gap() > before


def test_free_bits_default_to_zero_and_leave_the_official_kl_untouched() -> None:
    model = BicycleGAN(variant("bicyclegan", TINY))
    assert model.kl_free_nats == 0.0
    data = variant_batch()
    torch.manual_seed(0)
    total, losses, _, _ = model.generator_objective(data["A"][:2], data["B"][:2])
    model.weights["kl"] = 0.0
    torch.manual_seed(0)
    without_kl = model.generator_objective(data["A"][:2], data["B"][:2])[0]
    assert torch.allclose(total - without_kl, 0.01 * losses["kl"], rtol=1e-4, atol=1e-7)


def test_free_bits_stop_the_kl_gradient_below_the_allowance_and_keep_it_above() -> None:
    data = variant_batch()
    model = BicycleGAN(variant("bicyclegan", [*TINY, "model.kl_free_nats=100.0"]))
    E = model.networks["E"]
    with torch.no_grad():  # an encoder far from the prior (the init keeps mu and logvar near 0)
        for p in E.parameters():
            p.mul_(30)
    for name in ("l1", "gan", "gan2", "latent"):
        model.weights[name] = 0.0  # the KL alone

    def kl_gradients() -> list[torch.Tensor]:
        E.zero_grad(set_to_none=False)
        torch.manual_seed(0)
        model.generator_objective(data["A"][:2], data["B"][:2])[0].backward()
        return [p.grad.clone() for p in E.parameters()]

    assert not any(g.any() for g in kl_gradients())  # every dimension under 100 nats: free
    model.kl_free_nats = 1e-6
    above = kl_gradients()  # every dimension above the allowance: the paper's gradient
    model.kl_free_nats = 0.0
    official = kl_gradients()
    assert any(g.any() for g in official)
    assert all(torch.allclose(a, o, rtol=1e-4, atol=1e-8) for a, o in zip(above, official))


def test_free_bits_are_a_recipe_key_with_a_clear_error() -> None:
    assert variant("bicyclegan", ["model.kl_free_nats=0.5"]).model.options.kl_free_nats == 0.5
    with pytest.raises(RecipeError, match="model.kl_free_nats"):
        variant("bicyclegan", ["model.kl_free_nats=-1"])
