"""How the models run their networks (``ganzoo.models.networks``): stacked calls, memory format, compile,
and plain ``torch.nn`` layers unless an accelerator plugin says otherwise.

BicycleGAN's single backward (against the official two passes) is tested in ``test_models.py``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ganzoo.layers.norms import norm_layer
from ganzoo.models import BicycleGAN
from ganzoo.models.networks import build_networks, has_batch_statistics, run_stacked, set_requires_grad
from ganzoo.recipe import resolve_recipe
from ganzoo.registry import build
from ganzoo.training.trainer import build_training
from helpers import MODELS, SIZE, assert_same_step, bicyclegan_recipe, make, parts_of, step_and_grads


# -- building ----------------------------------------------------------------------------------------------
def test_build_networks_builds_the_named_ones_initialised_from_the_recipe() -> None:
    recipe = resolve_recipe(bicyclegan_recipe())
    torch.manual_seed(0)
    nets = build_networks(recipe.model.networks, recipe.model.init, ["G", "D"], BicycleGAN.network_kinds)
    assert list(nets) == ["G", "D"]
    torch.manual_seed(0)
    again = build_networks(recipe.model.networks, recipe.model.init, ["G", "D"], BicycleGAN.network_kinds)
    for (key, p), q in zip(nets.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), key
    set_requires_grad([nets["D"], None], False)
    assert not any(p.requires_grad for p in nets["D"].parameters())
    assert all(p.requires_grad for p in nets["G"].parameters())
    assert has_batch_statistics(build("discriminator", "basic", input_nc=3, ndf=8, norm="batch"))
    assert not has_batch_statistics(nets["D"])  # instance norm


# -- one stacked call instead of two under instance norm ---------------------------------------------------
def test_stacked_calls_equal_separate_calls_with_instance_norm() -> None:
    torch.manual_seed(0)
    G = build("generator", "unet", num_downs=5, input_nc=1, output_nc=3, nz=4, ngf=8, norm="instance",
              use_dropout=False, inject="all")
    D = build("discriminator", "basic_128_multi", input_nc=3, ndf=8, norm="instance", num_D=2)
    A, z1, z2 = torch.randn(2, 1, SIZE, SIZE), torch.randn(2, 4), torch.randn(2, 4)
    calls: list[int] = []
    G.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    stacked = run_stacked(G, (A, z1), (A, z2))
    assert calls == [4]  # one call on the stacked batch
    separate = [G(A, z1), G(A, z2)]
    for s, p in zip(stacked, separate):
        torch.testing.assert_close(s, p, rtol=1e-5, atol=1e-5)
    d_stacked = run_stacked(D, stacked[0], stacked[1])
    d_separate = [D(separate[0]), D(separate[1])]
    loss_s = sum(o.square().mean() for outs in d_stacked for o in outs)
    loss_p = sum(o.square().mean() for outs in d_separate for o in outs)
    torch.testing.assert_close(loss_s, loss_p, rtol=1e-5, atol=1e-6)
    gs = torch.autograd.grad(loss_s, list(G.parameters()) + list(D.parameters()))
    gp = torch.autograd.grad(loss_p, list(G.parameters()) + list(D.parameters()))
    for a, b in zip(gs, gp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_batch_norm_is_never_stacked() -> None:
    D = build("discriminator", "basic", input_nc=3, ndf=8, norm="batch")
    calls = []
    D.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    run_stacked(D, torch.randn(2, 3, SIZE, SIZE), torch.randn(2, 3, SIZE, SIZE))
    assert calls == [2, 2]
    calls.clear()
    run_stacked(D, torch.randn(2, 3, SIZE, SIZE), torch.randn(2, 3, SIZE, SIZE), always=True)
    assert calls == [4]  # only when asked (model.stack_branches)


def test_cyclegan_step_runs_three_generator_calls_equal_to_the_official_six(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.models import cyclegan

    stacked, batch = make("cyclegan")
    calls: dict[str, list[int]] = {"G_A": [], "G_B": []}
    for name, sizes in calls.items():
        stacked.model.networks[name].register_forward_pre_hook(
            lambda m, args, sizes=sizes: sizes.append(args[0].shape[0]))
    stacked_losses, stacked_grads = step_and_grads(stacked, batch)
    n = batch["A"].shape[0]
    assert calls == {"G_A": [3 * n], "G_B": [2 * n, n]}

    monkeypatch.setattr(cyclegan, "run_stacked", lambda net, *args, **kw: [net(a) for a in args])
    separate, _ = make("cyclegan")
    assert_same_step((stacked_losses, stacked_grads), step_and_grads(separate, batch), rtol=1e-4, atol=1e-6)


def test_bicyclegan_stack_branches_runs_G_once_under_batch_norm() -> None:
    """model.stack_branches: one G call for both branches, batch statistics over both halves."""
    model = BicycleGAN(resolve_recipe(bicyclegan_recipe(norm="batch", stack_branches=True)), "cpu")
    assert model.stack_branches
    G = model.networks["G"]
    calls = []
    G.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    torch.manual_seed(0)
    A, B = torch.randn(4, 1, SIZE, SIZE), torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    _, _, fake_enc, fake_rand = model.generator_objective(A, B)
    assert calls == [8] and fake_enc.shape == fake_rand.shape == (4, 3, SIZE, SIZE)
    model.stack_branches = False
    calls.clear()
    model.generator_objective(A, B)
    assert calls == [4, 4]  # the official formulation: each branch's own batch statistics
    assert not BicycleGAN(resolve_recipe(bicyclegan_recipe(norm="batch")), "cpu").stack_branches  # off by default


# -- memory format and compile switches --------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_channels_last_gives_the_same_step(name: str) -> None:
    plain, batch = make(name)
    fast, _ = make(name, channels_last=True)
    conv = next(m for m in fast.model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    fast_batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
    assert_same_step(step_and_grads(fast, fast_batch), step_and_grads(plain, batch), rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_compiled_networks_give_the_same_step() -> None:
    plain, batch = make("cyclegan")
    fast, _ = make("cyclegan", compile=True)
    assert fast.model.networks.state_dict().keys() == plain.model.networks.state_dict().keys()
    assert_same_step(step_and_grads(fast, batch), step_and_grads(plain, batch), rtol=1e-3, atol=1e-5)


# -- without an accelerator plugin the networks are plain torch.nn ------------------------------------------
def _layer_classes(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


@pytest.mark.parametrize("name", list(MODELS))
def test_without_plugins_every_layer_is_plain_torch_nn_or_ganzoo(name: str) -> None:
    parts, batch = make(name)
    assert parts.accelerators == {}
    parts.step(batch)  # nothing is swapped lazily on the first step either
    for model in (parts.model, build_training(resolve_recipe(MODELS[name][1]()), torch.device("cpu")).model):
        for cls in _layer_classes(model):
            module = cls.__module__
            assert module.startswith("torch.nn.") or module.startswith("ganzoo."), (name, cls)
            assert not cls.__name__.startswith("Tuned"), (name, cls)
        convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        assert convs and {type(m) for m in convs} <= {nn.Conv2d, nn.ConvTranspose2d}, (name, _layer_classes(model))
        printed = str(model)
        assert "Tuned" not in printed and "Winograd" not in printed and "Gemm" not in printed


@pytest.mark.parametrize("recipe", ["quickstart_pix2pix", "quickstart_cyclegan", "quickstart_bicyclegan"])
def test_shipped_recipes_build_plain_convolutions(recipe: str) -> None:
    from ganzoo.recipe import prepare_recipe
    from helpers import RECIPES

    resolved = prepare_recipe(RECIPES / f"{recipe}.yaml", ["data.root=unused"])
    assert resolved.train.accelerators == ()
    model = parts_of(resolved).model
    convs = [type(m) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and set(convs) <= {nn.Conv2d, nn.ConvTranspose2d}
    assert "Tuned" not in str(model)


# -- instance norm: torch's maths, without the view that makes in-place activations costly ----------------
@pytest.mark.parametrize("channels_last", [False, True])
def test_instance_norm_equals_torch_bit_for_bit_and_is_not_a_view(channels_last: bool) -> None:
    norm, reference = norm_layer("instance")(6), nn.InstanceNorm2d(6)
    x = torch.randn(2, 6, 9, 7) * 3 + 5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 6, 9, 7)
    outputs = []
    for layer in (norm, reference):
        leaf = x.clone().requires_grad_()
        out = nn.functional.leaky_relu(layer(leaf), 0.2)
        outputs.append((out, torch.autograd.grad(out, leaf, grad)[0]))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    out = norm(x.clone().requires_grad_())
    assert not out._is_view()  # an in-place op on it must not turn into CopySlices in the backward
    out.relu_().sum().backward()  # and an in-place activation on it differentiates


def test_traced_instance_norm_takes_other_batch_sizes() -> None:
    norm = norm_layer("instance")(4)
    traced = torch.jit.trace(norm, torch.randn(2, 4, 8, 8))  # as `ganzoo export` traces a generator
    x = torch.randn(3, 4, 6, 6)
    assert torch.equal(traced(x), nn.InstanceNorm2d(4)(x))
