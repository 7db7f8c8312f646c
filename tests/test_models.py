"""Each model's training step on tiny 32-px batches, and BicycleGAN's one-backward latent L1."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from ganzoo.models import BicycleGAN, CycleGAN, Pix2Pix
from ganzoo.models.networks import set_requires_grad
from ganzoo.recipe import build_meta_networks, resolve_recipe
from helpers import SIZE, batch, bicyclegan_recipe, cyclegan_recipe, parts_of, pix2pix_recipe

def snapshot(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
            for name, net in model.networks.items()}


def changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in net.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("make,data", [
    (lambda: bicyclegan_recipe(), lambda: batch(4)),
    (lambda: bicyclegan_recipe(norm="batch", dropout=True), lambda: batch(4)),
    (lambda: bicyclegan_recipe(use_same_D=True), lambda: batch(4)),
    (lambda: _conditional_bicyclegan(), lambda: batch(4)),
    (lambda: _ensemble_D2_bicyclegan(), lambda: batch(4)),
    (lambda: pix2pix_recipe(dropout=True), lambda: batch(2, 3, 3)),
    (lambda: cyclegan_recipe(), lambda: batch(2, 3, 3)),
], ids=["bicyclegan", "bicyclegan-batchnorm-dropout", "bicyclegan-same-D", "bicyclegan-conditional-D",
        "bicyclegan-ensemble-D2", "pix2pix", "cyclegan"])
@pytest.mark.parametrize("in_backward", [False, True], ids=["after-backward", "in-backward"])
def test_train_step_updates_every_network_with_finite_losses(make, data, in_backward: bool) -> None:
    raw = make()
    raw["train"]["step_in_backward"] = in_backward
    parts = parts_of(raw)
    model = parts.model
    before = snapshot(model)
    losses = parts.step(data())
    assert losses, "a training step must report its losses"
    for name, value in losses.items():
        assert torch.isfinite(value), f"loss {name} is not finite"
    for name, net in model.networks.items():
        assert changed(before[name], net), f"{name} did not change after a training step"


def _ensemble_D2_bicyclegan() -> dict[str, Any]:
    recipe = bicyclegan_recipe()
    recipe["model"]["networks"]["D2"] = {"type": "ensemble", "input_nc": 3, "members": [
        {"type": "basic_128_multi", "ndf": 8, "num_D": 2}, {"type": "pixel", "ndf": 8, "norm": "none"}]}
    return recipe


def _conditional_bicyclegan() -> dict[str, Any]:
    recipe = bicyclegan_recipe(conditional_D=True)
    recipe["model"]["networks"]["D"]["input_nc"] = 4
    recipe["model"]["networks"]["D2"]["input_nc"] = 4
    return recipe


def test_models_build_networks_and_criterion_only() -> None:
    """Optimizers, precision and threads belong to the Trainer: a model holds none of them."""
    for cls, raw in ((BicycleGAN, bicyclegan_recipe()), (Pix2Pix, pix2pix_recipe()), (CycleGAN, cyclegan_recipe())):
        model = cls(resolve_recipe(raw), "cpu")
        for gone in ("optimizers", "precision", "branches", "world_size"):
            assert not hasattr(model, gone), (cls.__name__, gone)
        assert set(model.networks) == set(cls.required_networks(resolve_recipe(raw).model))


def test_update_groups_name_the_networks_each_optimizer_updates_in_the_official_order() -> None:
    bicycle = resolve_recipe(bicyclegan_recipe()).model
    assert BicycleGAN.update_groups(bicycle) == {"G": ["G"], "E": ["E"], "D": ["D"], "D2": ["D2"]}
    same_D = resolve_recipe(bicyclegan_recipe(use_same_D=True)).model
    assert BicycleGAN.update_groups(same_D) == {"G": ["G"], "E": ["E"], "D": ["D"]}
    assert Pix2Pix.update_groups(resolve_recipe(pix2pix_recipe()).model) == {"G": ["G"], "D": ["D"]}
    assert CycleGAN.update_groups(resolve_recipe(cyclegan_recipe()).model) == {"G": ["G_A", "G_B"],
                                                                               "D": ["D_A", "D_B"]}
    assert not hasattr(BicycleGAN, "optimizer_groups")  # renamed to update_groups
    parts = parts_of(cyclegan_recipe())
    d_params = {id(p) for name in ("D_A", "D_B") for p in parts.model.networks[name].parameters()}
    assert {id(p) for p in parts.optimizers["D"].param_groups[0]["params"]} == d_params


@pytest.mark.parametrize("raw, expected", [
    (bicyclegan_recipe(), [("G", "E"), ("D",), ("D2",)]),
    (bicyclegan_recipe(use_same_D=True), [("G", "E"), ("D",)]),
    (pix2pix_recipe(), [("D",), ("G",)]),
    (cyclegan_recipe(), [("G",), ("D",)]),
], ids=["bicyclegan", "bicyclegan-same-D", "pix2pix", "cyclegan"])
def test_each_step_updates_its_groups_in_the_official_order_one_at_a_time(raw: dict[str, Any],
                                                                          expected: list[tuple[str, ...]]) -> None:
    """BicycleGAN: G and E from one loss in one update, then D and D2 in turn; pix2pix D before G."""
    parts = parts_of(raw)
    calls: list[tuple[str, ...]] = []
    update = parts.updater.update

    def recording_update(groups: str | list[str], loss: torch.Tensor) -> None:
        calls.append((groups,) if isinstance(groups, str) else tuple(groups))
        assert loss.dim() == 0 and loss.requires_grad
        update(groups, loss)

    parts.updater.update = recording_update  # type: ignore[method-assign]
    n = raw["train"]["batch_size"]
    parts.step(batch(n, 1 if raw["model"]["type"] == "bicyclegan" else 3))
    assert calls == expected


def test_bicyclegan_same_D_has_no_D2() -> None:
    model = BicycleGAN(resolve_recipe(bicyclegan_recipe(use_same_D=True)))
    assert set(model.networks) == {"G", "E", "D"}


def test_zero_weight_removes_the_term_and_its_network() -> None:
    parts = parts_of(bicyclegan_recipe(losses={"gan2": 0.0, "latent": 0.0}))
    assert "D2" not in parts.model.networks and "D2" not in parts.optimizers
    losses = parts.step(batch(4))
    assert "gan2" not in losses and "latent" not in losses and "D2" not in losses
    assert {"gan", "l1", "kl", "D"} <= set(losses)


def test_latent_l1_never_changes_the_encoder() -> None:
    """With only the latent term on, G learns and E's weights stay exactly as they were."""
    recipe = bicyclegan_recipe(losses={"gan": 0.0, "gan2": 0.0, "l1": 0.0, "kl": 0.0, "latent": 0.5})
    parts = parts_of(recipe)
    model = parts.model
    before = snapshot(model)
    losses = parts.step(batch(4))
    assert set(losses) == {"latent", "G_total"}
    assert changed(before["G"], model.networks["G"])
    assert not changed(before["E"], model.networks["E"])
    assert all(p.grad is None for p in model.networks["E"].parameters())


def _two_pass_reference(model: BicycleGAN, A_enc: torch.Tensor, B_enc: torch.Tensor) -> None:
    """The official formulation: backward of the G/E losses with retain_graph, then the latent L1
    backward again through G with E frozen (requires_grad False)."""
    w = model.weights
    G, E, D, D2 = (model.networks[n] for n in ("G", "E", "D", "D2"))
    z_rand = model.random_z(A_enc.shape[0])
    mu, logvar = E(B_enc)
    z_enc = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    fake_enc = G(A_enc, z_enc)
    fake_rand = G(A_enc, z_rand)
    loss = (w["gan"] * model.criterion_gan(D(fake_enc), True, for_discriminator=False)
            + w["gan2"] * model.criterion_gan(D2(fake_rand), True, for_discriminator=False)
            + w["l1"] * F.l1_loss(fake_enc, B_enc)
            + w["kl"] * (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())))
    loss.backward(retain_graph=True)
    set_requires_grad([E], False)
    mu2, _ = E(fake_rand)
    (w["latent"] * F.l1_loss(mu2, z_rand)).backward()
    set_requires_grad([E], True)


def test_one_backward_equals_the_official_two_pass_gradients() -> None:
    """Also the KL: a per-sample mean times train.batch_size // 2 equals the official sum on one process."""
    model = BicycleGAN(resolve_recipe(bicyclegan_recipe()))
    assert model.kl_batch == 2
    reference = copy.deepcopy(model)
    data = batch(4)
    A_enc, B_enc = data["A"][:2], data["B"][:2]
    set_requires_grad([model.networks["D"], model.networks["D2"]], False)
    set_requires_grad([reference.networks["D"], reference.networks["D2"]], False)

    torch.manual_seed(7)
    total, _, _, _ = model.generator_objective(A_enc, B_enc)
    total.backward()
    torch.manual_seed(7)
    _two_pass_reference(reference, A_enc, B_enc)

    for name in ("G", "E"):
        ours = dict(model.networks[name].named_parameters())
        for key, p_ref in reference.networks[name].named_parameters():
            assert p_ref.grad is not None and ours[key].grad is not None, f"{name}.{key} has no gradient"
            torch.testing.assert_close(ours[key].grad, p_ref.grad, rtol=1e-4, atol=1e-6,
                                       msg=lambda m, n=name, k=key: f"{n}.{k}: {m}")


def test_odd_batch_is_a_recipe_error() -> None:
    from ganzoo.errors import RecipeError

    recipe = resolve_recipe(bicyclegan_recipe())
    nets = build_meta_networks(recipe)
    BicycleGAN.check_recipe(recipe, nets)
    odd = recipe.replace(train=dataclasses.replace(recipe.train, batch_size=3))
    with pytest.raises(RecipeError, match="train.batch_size.*even"):
        BicycleGAN.check_recipe(odd, nets)
    raw = bicyclegan_recipe()
    raw["train"]["batch_size"] = 3
    with pytest.raises(RecipeError, match="train.batch_size.*even"):
        resolve_recipe(raw)


def test_bicyclegan_sample_shapes_and_shared_z() -> None:
    model = BicycleGAN(resolve_recipe(bicyclegan_recipe())).eval()
    A = batch(3)["A"]
    z = torch.randn(5, 4)
    out = model.sample(A, z)
    assert out.shape == (3, 5, 3, SIZE, SIZE)
    # The same z on the same input gives the same output (no hidden randomness in eval mode).
    torch.testing.assert_close(model.sample(A, z), out)
    # Different z give different outputs.
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_sample_codes_are_drawn_from_the_given_generator() -> None:
    model = BicycleGAN(resolve_recipe(bicyclegan_recipe()))
    codes = model.sample_codes(5, torch.Generator().manual_seed(1234))
    assert codes.shape == (5, 4)
    torch.manual_seed(99)  # the global stream plays no part
    assert torch.equal(model.sample_codes(5, torch.Generator().manual_seed(1234)), codes)
    assert not torch.equal(model.sample_codes(5, torch.Generator().manual_seed(1)), codes)
    for cls, raw in ((Pix2Pix, pix2pix_recipe()), (CycleGAN, cyclegan_recipe())):
        assert cls(resolve_recipe(raw)).sample_codes(4, torch.Generator().manual_seed(0)) is None


def test_cyclegan_pools_draw_from_the_recipe_seed() -> None:
    def pool_draws(seed: int) -> list[torch.Tensor]:
        model = CycleGAN(resolve_recipe(cyclegan_recipe(pool_size=2, seed=seed)))
        torch.manual_seed(0)  # the global stream is the same for both
        out = []
        for step in range(6):
            images = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 2, 2) + 10 * step
            out += [model.pools[name].query(images.clone()) for name in ("A", "B")]
        return out

    same, again, other = pool_draws(0), pool_draws(0), pool_draws(5)
    assert all(torch.equal(a, b) for a, b in zip(same, again))
    assert not all(torch.equal(a, b) for a, b in zip(same, other))


def test_cyclegan_pool_state_round_trips() -> None:
    parts = parts_of(cyclegan_recipe(pool_size=3))
    model = parts.model
    for _ in range(3):
        parts.step(batch(2, 3, 3))
    state = model.extra_state()
    assert state["pools"]["A"]["count"] == 3
    other = CycleGAN(resolve_recipe(cyclegan_recipe(pool_size=3)))
    other.load_extra_state(state)
    fakes = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(other.pools["A"].query(fakes), model.pools["A"].query(fakes))


def test_cyclegan_stacked_identity_calls_give_the_separate_call_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """G_A(real_A) and G_A(real_B) in one stacked call (instance norm) = two separate calls."""
    import ganzoo.models.cyclegan as cyclegan_module

    stacked = parts_of(cyclegan_recipe())
    separate = parts_of(cyclegan_recipe())
    data = batch(2, 3, 3)
    torch.manual_seed(1)
    losses = stacked.step(data)
    monkeypatch.setattr(cyclegan_module, "run_stacked", lambda net, *calls: [net(c) for c in calls])
    torch.manual_seed(1)
    reference = separate.step(data)
    for key in losses:
        torch.testing.assert_close(losses[key], reference[key], rtol=1e-5, atol=1e-6)
    for name in ("G_A", "G_B"):
        for p, q in zip(stacked.model.networks[name].parameters(), separate.model.networks[name].parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4)


# -- train.optimizers: one optimizer changed by name ------------------------------------------------------
def _resolved(model: str, **train: Any) -> Any:
    from fault_injection import tiny_recipe

    from ganzoo.recipe import resolve_recipe

    return resolve_recipe(tiny_recipe(model, "unused-root", **train))


def test_a_named_optimizer_takes_its_changes_and_the_rest_keep_train_optimizer() -> None:
    recipe = _resolved("bicyclegan", optimizers={"D": {"lr": 4e-3}, "D2": {"betas": [0.0, 0.9]}})
    train = recipe.train.to_dict()
    base = train["optimizer"]
    assert train["optimizers"]["D"] == {**base, "lr": 4e-3}  # resolved in full for `ganzoo info`
    assert train["optimizers"]["D2"] == {**base, "betas": [0.0, 0.9]}
    optimizers = parts_of(recipe).optimizers
    lrs = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    assert lrs == {"G": base["lr"], "E": base["lr"], "D": 4e-3, "D2": base["lr"]}
    assert optimizers["D2"].param_groups[0]["betas"] == (0.0, 0.9)
    assert optimizers["G"].param_groups[0]["betas"] == (0.5, 0.999)


def test_cyclegan_names_its_two_optimizers_and_a_new_type_starts_afresh() -> None:
    recipe = _resolved("cyclegan", optimizers={"D": {"type": "sgd", "lr": 0.01}})
    assert recipe.train.optimizers["D"]["type"] == "sgd"
    assert "betas" not in recipe.train.optimizers["D"]  # Adam's arguments do not carry over
    parts = parts_of(recipe)
    assert isinstance(parts.optimizers["D"], torch.optim.SGD)
    assert isinstance(parts.optimizers["G"], torch.optim.Adam)
    d_params = {id(p) for name in ("D_A", "D_B") for p in parts.model.networks[name].parameters()}
    assert {id(p) for p in parts.optimizers["D"].param_groups[0]["params"]} == d_params


@pytest.mark.parametrize("model, optimizers, key, words", [
    ("bicyclegan", {"D3": {"lr": 1e-3}}, "train.optimizers.D3", "did you mean 'D' or 'D2'"),
    ("cyclegan", {"D_A": {"lr": 1e-3}}, "train.optimizers.D_A", "unknown optimizer"),
    ("pix2pix", {"D": {"lr": -1.0}}, "train.optimizers.D.lr", "must be > 0"),
    ("pix2pix", {"D": {"momentom": 0.9}}, "train.optimizers.D.momentom", "unknown argument"),
    ("pix2pix", {"D": [1e-3]}, "train.optimizers.D", "expected a mapping"),
])
def test_optimizer_changes_are_checked_by_name(model: str, optimizers: dict[str, Any], key: str,
                                               words: str) -> None:
    from ganzoo.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        _resolved(model, optimizers=optimizers)
    assert info.value.key == key
    assert words in str(info.value)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # no training step here
def test_each_scheduler_decays_its_own_optimizer_from_its_own_rate(tmp_path: Any) -> None:
    from fault_injection import tiny_recipe

    from ganzoo.recipe import resolve_recipe
    from ganzoo.training.trainer import Trainer

    raw = tiny_recipe("pix2pix", tmp_path / "data", max_steps=4, epochs=1, epochs_decay=1,
                      optimizers={"D": {"lr": 4e-3}})
    trainer = Trainer(resolve_recipe(raw), tmp_path / "run", show_progress=False)
    for _ in range(3):
        trainer._step_schedulers({})
    assert trainer.optimizers is trainer.parts.optimizers and trainer.updater.optimizers is trainer.optimizers
    g_lr = trainer.optimizers["G"].param_groups[0]["lr"]
    d_lr = trainer.optimizers["D"].param_groups[0]["lr"]
    assert 0 < g_lr < 1e-3  # decaying, not yet at 0
    assert d_lr == pytest.approx(4 * g_lr)  # the same linear rule, scaled per optimizer


def test_loss_warmup_ramps_a_term_from_its_first_update_to_its_full_weight() -> None:
    model = BicycleGAN(resolve_recipe(bicyclegan_recipe(losses={"kl": 0.03}, loss_warmup={"kl": 4})))
    ramp = []
    for step in range(6):
        model.set_step(step)
        ramp.append(model.weights["kl"])
    assert ramp == pytest.approx([0.0075, 0.015, 0.0225, 0.03, 0.03, 0.03])
    assert model.weights["l1"] == BicycleGAN.loss_weights["l1"]  # terms not named keep their weight

    # The ramped weight is the one the step's total uses: same inputs, same z, only kl's weight differs.
    data = batch(4)
    totals = []
    for step in (0, 3):
        model.set_step(step)
        torch.manual_seed(0)
        total, losses, _, _ = model.generator_objective(data["A"][:2], data["B"][:2])
        totals.append((float(total.detach()), float(losses["kl"].detach())))
    (early, kl), (late, kl_again) = totals
    assert kl == pytest.approx(kl_again)
    assert late - early == pytest.approx((0.03 - 0.0075) * kl, rel=1e-4)


@pytest.mark.parametrize("warmup, key, words", [
    ({"kll": 100}, "model.loss_warmup.kll", "did you mean 'kl'"),
    ({"kl": -1}, "model.loss_warmup.kl", "must be >= 0"),
    ({"kl": 2.5}, "model.loss_warmup.kl", "expected an integer"),
])
def test_loss_warmup_names_a_loss_term_and_a_step_count(warmup: dict[str, Any], key: str, words: str) -> None:
    from fault_injection import tiny_recipe

    from ganzoo.errors import RecipeError
    from ganzoo.recipe import resolve_recipe

    raw = tiny_recipe("bicyclegan", "unused-root")
    raw["model"]["loss_warmup"] = warmup
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.key == key
    assert words in str(info.value)


def test_training_logs_the_ramped_weight_and_resumes_on_the_ramp(tmp_path: Any) -> None:
    from fault_injection import tiny_recipe
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ganzoo.recipe import resolve_recipe
    from ganzoo.training.trainer import Trainer

    raw = tiny_recipe("bicyclegan", tmp_path / "data", max_steps=4)
    raw["model"]["losses"] = {"kl": 0.02}
    raw["model"]["loss_warmup"] = {"kl": 8}
    Trainer(resolve_recipe(raw), tmp_path / "run", show_progress=False).run()
    events = EventAccumulator(str(tmp_path / "run" / "logs"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("weight/kl")}
    # Logged after each update, so step s shows the weight that update s used: s/8 of 0.02.
    assert logged == pytest.approx({2: 0.005, 4: 0.01})

    resolved = resolve_recipe({**raw, "train": {**raw["train"], "max_steps": 6}})
    resumed = Trainer(resolved, tmp_path / "run", resume=True, show_progress=False)
    resumed.run()
    assert resumed.model.weights["kl"] == pytest.approx(0.015)  # the 6th update's weight, not the 1st's
