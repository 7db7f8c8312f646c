"""The Trainer's update (``ganzoo.training.updates`` and ``optim``): every way of making it keeps the maths.

Updates inside the backward against one step after it (bit for bit), the non-finite guard, fused
Adam, gradients freed at the start of a step, bf16/fp16, on tiny CPU batches.
"""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn as nn

from ganzoo.training.optim import make_optimizer
from ganzoo.training.updates import PRECISIONS, Updater, cpu_has_bf16_hardware, grads_are_finite
from helpers import MODELS, make, parts_of, step_and_grads


@pytest.mark.parametrize("name", list(MODELS))
def test_a_step_frees_every_network_s_old_gradients_before_its_first_forward(name: str) -> None:
    """The last step's gradients must not sit through this step's backwards (pix2pix kept G's
    through D's update, with G's activations alive: the step's peak of memory)."""
    parts, batch = make(name)  # updates after the backward: the gradients outlive the step
    parts.step(batch)
    params = [p for net in parts.model.networks.values() for p in net.parameters()]
    assert any(p.grad is not None for p in params)  # the last step's, still there after it
    seen: list[int] = []

    def count_old_gradients(module: nn.Module, args: Any) -> None:
        if not seen:
            seen.append(sum(p.grad is not None for p in params))

    hooks = [net.register_forward_pre_hook(count_old_gradients) for net in parts.model.networks.values()]
    try:
        parts.step(batch)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [0]


# -- optimizer --------------------------------------------------------------------------------------------
def test_adam_is_fused_on_the_cpu_and_matches_the_plain_loop() -> None:
    torch.manual_seed(0)
    # No norm layer: a conv bias under instance norm has a zero gradient that Adam turns into noise steps.
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3))
    plain_net = copy.deepcopy(net)
    cfg = {"type": "adam", "lr": 2e-3, "betas": [0.5, 0.999]}
    fast = make_optimizer(net.parameters(), cfg, torch.device("cpu"))
    plain = torch.optim.Adam(plain_net.parameters(), lr=2e-3, betas=(0.5, 0.999), foreach=False)
    assert fast.defaults["fused"] is True
    x = torch.randn(2, 3, 12, 12)
    for _ in range(5):
        for n, opt in ((net, fast), (plain_net, plain)):
            opt.zero_grad(set_to_none=True)
            n(x).square().mean().backward()
            opt.step()
    for p, q in zip(net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_explicit_optimizer_flags_are_kept() -> None:
    opt = make_optimizer([nn.Parameter(torch.zeros(2))], {"type": "adam", "foreach": False}, torch.device("cpu"))
    assert not opt.defaults.get("fused") and opt.defaults["foreach"] is False
    opt = make_optimizer([nn.Parameter(torch.zeros(2))], {"type": "adam", "fused": False}, torch.device("cpu"))
    assert not opt.defaults.get("fused")


@pytest.mark.parametrize("name,g_norm", [("bicyclegan", "instance"), ("bicyclegan", "batch"), ("pix2pix", "batch"),
                                         ("cyclegan", "instance")])
@pytest.mark.parametrize("each_at_once", [True, False], ids=["each_at_once", "collected"])
def test_updates_inside_the_backward_give_the_same_weights_bit_for_bit(name: str, g_norm: str, each_at_once: bool,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        torch_threads: Any) -> None:
    """train.step_in_backward: each parameter updated as its gradient completes equals one step after
    the backward, weights and Adam moments alike, over three steps. BicycleGAN with batch norm calls G
    once per branch, so the frozen encoder's backward (detached weights of E) and E's own accumulation
    are not tied by the graph: the engine's order must still run the former first."""
    from ganzoo.training import steps_in_backward

    torch_threads(1)  # both runs alike; tiny convolutions are faster on one thread of a busy machine
    if each_at_once:  # else these tiny gradients are all collected and applied as the backward ends
        monkeypatch.setattr(steps_in_backward, "FLUSH_BYTES", 1)
    _, recipe_of, _ = MODELS[name]
    _, batch = make(name)
    runs = []
    for in_backward in (False, True):
        recipe = recipe_of(step_in_backward=in_backward)
        for net_name, spec in recipe["model"]["networks"].items():
            if net_name.startswith("G"):
                spec["norm"] = g_norm
        parts = parts_of(recipe)
        assert parts.updater.step_in_backward is in_backward
        g_params = [p for n, net in parts.model.networks.items() if n.startswith("G") for p in net.parameters()]
        complete: list[int] = []
        hooks = [p.register_post_accumulate_grad_hook(
            lambda p: complete.append(sum(q.grad is not None for q in g_params))) for p in g_params]
        torch.manual_seed(1)
        for _ in range(3):
            parts.step(batch)
        for hook in hooks:
            hook.remove()
        runs.append((parts, complete, len(g_params)))
    (plain, plain_counts, n_g), (fast, fast_counts, _) = runs
    for (key, p), q in zip(plain.model.networks.state_dict().items(), fast.model.networks.state_dict().values()):
        assert torch.equal(p, q), key
    assert plain.optimizers.keys() == fast.optimizers.keys()
    for opt_name, opt in plain.optimizers.items():
        fast_opt = fast.optimizers[opt_name]
        for p, q in zip(opt.param_groups[0]["params"], fast_opt.param_groups[0]["params"]):
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(opt.state[p][key], fast_opt.state[q][key]), (opt_name, key)
    assert all(p.grad is None for p in fast.model.parameters())  # freed as they were used
    # after the backward, all of G's gradients existed together; inside it, never more than a few
    assert max(plain_counts) == n_g
    assert max(fast_counts) <= (2 if each_at_once else n_g)
    if each_at_once:
        assert max(fast_counts) < n_g  # G's gradients never all exist at once


# -- the discriminator's weights are frozen during the generator step --------------------------------------
@pytest.mark.parametrize("name,g_group,d_names", [
    ("bicyclegan", ("G", "E"), ("D", "D2")), ("pix2pix", ("G",), ("D",)), ("cyclegan", ("G",), ("D_A", "D_B"))])
def test_generator_backward_leaves_discriminator_grads_alone(name: str, g_group: tuple[str, ...],
                                                             d_names: tuple[str, ...]) -> None:
    parts, batch = make(name)  # updates after the backward: D's gradients outlive its update
    parts.step(batch)  # pix2pix's D step runs first: its D grads exist before the G backward
    d_params = [p for d in d_names for p in parts.model.networks[d].parameters()]
    seen: list[bool] = []
    update = parts.updater.update

    def spying_update(groups: str | list[str], loss: torch.Tensor) -> None:
        if ((groups,) if isinstance(groups, str) else tuple(groups)) == g_group:
            before = [None if p.grad is None else p.grad.clone() for p in d_params]
            assert not any(p.requires_grad for p in d_params)
            update(groups, loss)
            seen.append(all((b is None and p.grad is None) or (b is not None and torch.equal(b, p.grad))
                            for b, p in zip(before, d_params)))
        else:
            update(groups, loss)

    parts.updater.update = spying_update  # type: ignore[method-assign]
    parts.step(batch)
    assert seen == [True]
    assert all(p.requires_grad for p in d_params)  # switched back on for the next D step


# -- non-finite gradients ---------------------------------------------------------------------------------
def _net_and_optimizer() -> tuple[nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    return net, make_optimizer(net.parameters(), {"type": "adam", "lr": 0.1}, torch.device("cpu"))


@pytest.mark.parametrize("in_backward", [False, True], ids=["after-backward", "in-backward"])
@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_no_update_follows_a_nonfinite_gradient(in_backward: bool, policy: str) -> None:
    """Inside the backward or after it, a NaN/inf gradient updates no parameter and no Adam moment.
    Under ``stop`` the refusal is sticky (the run stops at its next check); ``skip`` refuses that group's
    update alone, names the group, and the next finite gradient is applied."""
    net, opt = _net_and_optimizer()
    before = copy.deepcopy(net.state_dict())
    updater = Updater({"G": opt}, "fp32", torch.device("cpu"), step_in_backward=in_backward, nonfinite=policy)
    # updates inside the backward only where every gradient is checked before its parameter: under stop
    assert updater.step_in_backward is (in_backward and policy == "stop")
    updater.begin_step()
    updater.update("G", net(torch.tensor([[math.inf, 1.0]])).sum())  # an inf weight gradient
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    for state in opt.state.values():  # no moment was fed a NaN/inf gradient
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                assert torch.isfinite(state[key]).all() and not state[key].any(), key
    updater.begin_step()
    updater.update("G", net(torch.ones(1, 2)).sum())  # a finite gradient after it
    if policy == "skip":
        assert updater.skipped == ["G"] and not torch.equal(net.weight, before["weight"])
    else:
        assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
        assert updater.nonfinite_report() is not None
    # the control: a finite gradient from the same start is applied
    net, opt = _net_and_optimizer()
    updater = Updater({"G": opt}, "fp32", torch.device("cpu"), step_in_backward=in_backward, nonfinite=policy)
    updater.begin_step()
    updater.update("G", net(torch.ones(1, 2)).sum())
    assert not torch.equal(net.weight, before["weight"]) and updater.skipped == []
    assert updater.nonfinite_report() is None


def test_the_fused_finiteness_check_matches_the_plain_one_and_leaves_gradients_alone() -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7)),
              torch.nn.Parameter(torch.randn(2))]
    optimizer = torch.optim.Adam(params[:2])
    other = torch.optim.Adam(params[2:])
    assert grads_are_finite([optimizer, other])  # no gradients yet
    for p in params:
        p.grad = torch.randn_like(p) * 1e30  # large but finite: no overflow in the check
    before = [p.grad.clone() for p in params]
    assert grads_are_finite([optimizer, other])
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))  # bit for bit
    for bad in (float("nan"), float("inf"), -float("inf")):
        params[2].grad[1] = bad
        assert not grads_are_finite([optimizer, other])
        assert grads_are_finite([optimizer])  # only the other optimizer's gradients are bad
        params[2].grad[1] = 0.0


# -- precision ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_autocast_on_the_cpu_stays_close_to_fp32(name: str) -> None:
    plain = step_and_grads(*make(name))
    fast_parts, batch = make(name, precision="bf16")
    assert fast_parts.updater.precision == "bf16"
    fast_losses, fast_grads = step_and_grads(fast_parts, batch)
    plain_losses, plain_grads = plain
    assert fast_losses.keys() == plain_losses.keys() and fast_grads.keys() == plain_grads.keys()
    for key, value in plain_losses.items():
        assert torch.isfinite(fast_losses[key]).all()
        torch.testing.assert_close(fast_losses[key].float(), value, rtol=5e-2, atol=5e-3)
    # bf16 keeps ~3 significant digits through a dozen layers: compare gradient directions per network
    # (measured: 0.92-0.99 on these 8-channel networks; a broken autocast path gives ~0).
    for net in {k.split(".")[0] for k in plain_grads}:
        keys = [k for k in plain_grads if k.startswith(net + ".")]
        a = torch.cat([fast_grads[k].float().flatten() for k in keys])
        b = torch.cat([plain_grads[k].flatten() for k in keys])
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.85, net


def test_fp16_needs_cuda_and_unknown_precisions_are_refused() -> None:
    from ganzoo.errors import RecipeError

    assert PRECISIONS == ("fp32", "bf16", "fp16")
    with pytest.raises(RecipeError, match="train.precision.*fp16 needs a CUDA device"):
        Updater({}, "fp16", torch.device("cpu"))
    with pytest.raises(RecipeError, match="train.precision"):
        Updater({}, "fp8", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with GradScaler needs CUDA")
@pytest.mark.parametrize("name", list(MODELS))
def test_fp16_with_grad_scalers_on_cuda_stays_close_to_fp32(name: str) -> None:
    plain, batch = make(name, device="cuda")
    fast, _ = make(name, device="cuda", precision="fp16")
    batch = {k: v.cuda() for k, v in batch.items()}
    plain_losses, _ = step_and_grads(plain, batch)
    fast_losses, _ = step_and_grads(fast, batch)
    for key, value in plain_losses.items():
        torch.testing.assert_close(fast_losses[key].float(), value, rtol=5e-2, atol=5e-3)
    # one GradScaler per update (BicycleGAN's G and E share theirs: one loss, one backward)
    assert set(fast.updater.scalers) == {"bicyclegan": {"G+E", "D", "D2"}, "pix2pix": {"D", "G"},
                                         "cyclegan": {"G", "D"}}[name]


@pytest.mark.parametrize("has_hardware, precision, device, warns", [
    (False, "bf16", "cpu", True),   # emulated bf16: slower than fp32, so say so
    (True, "bf16", "cpu", False),
    (None, "bf16", "cpu", False),   # torch cannot tell: no guess
    (False, "fp32", "cpu", False),
    (False, "bf16", "cuda", False),
])
def test_bf16_without_cpu_hardware_is_flagged(monkeypatch: pytest.MonkeyPatch, has_hardware: bool | None,
                                              precision: str, device: str, warns: bool) -> None:
    from ganzoo.training import updates

    monkeypatch.setattr(updates, "cpu_has_bf16_hardware", lambda: has_hardware)
    if device == "cpu":
        warning = Updater({}, precision, torch.device(device)).warning
    else:  # a pure function of the precision and the device: asked without a CUDA device here
        warning = Updater.warning.fget(SimpleNamespace(precision=precision, device=torch.device(device)))
    assert (warning is not None) == warns
    if warns:
        assert "train.precision=bf16" in warning and "fp32" in warning


def test_cpu_bf16_hardware_is_read_from_torch() -> None:
    found = cpu_has_bf16_hardware()
    if hasattr(torch.cpu, "get_capabilities"):
        capabilities = torch.cpu.get_capabilities()
        assert found == bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    else:
        assert found is None


# -- independent updates (BicycleGAN's D and D2) ------------------------------------------------------------
def test_independent_updates_run_in_order_under_autocast_and_a_runner_can_replace_how(
        monkeypatch: pytest.MonkeyPatch) -> None:
    nets = {name: nn.Linear(2, 1) for name in ("D", "D2")}
    updater = Updater({name: make_optimizer(net.parameters(), {"type": "adam", "lr": 0.1}, torch.device("cpu"))
                       for name, net in nets.items()}, "bf16", torch.device("cpu"))
    order: list[str] = []

    def forward(name: str):  # type: ignore[no-untyped-def]
        def run() -> torch.Tensor:
            order.append(name)
            assert torch.is_autocast_enabled("cpu")  # each forward under the updater's precision
            return nets[name](torch.ones(1, 2)).float().sum()
        return run

    before = {name: net.weight.detach().clone() for name, net in nets.items()}
    losses = updater.update_independent({"D": forward("D"), "D2": forward("D2")})
    assert order == ["D", "D2"] and list(losses) == ["D", "D2"]
    assert all(not torch.equal(before[name], nets[name].weight) for name in nets)  # both updated
    calls: list[list[str]] = []

    def reversed_runner(updates, run_one):  # type: ignore[no-untyped-def]
        calls.append(list(updates))
        return {group: run_one(group, updates[group]) for group in reversed(list(updates))}

    updater.run_independent = reversed_runner
    order.clear()
    updater.update_independent({"D": forward("D"), "D2": forward("D2")})
    assert calls == [["D", "D2"]] and order == ["D2", "D"]


def test_bicyclegan_updates_its_discriminators_as_independent_updates() -> None:
    parts, batch = make("bicyclegan")
    seen: list[list[str]] = []
    default = parts.updater.run_independent

    def recording(updates, run_one):  # type: ignore[no-untyped-def]
        seen.append(list(updates))
        return default(updates, run_one)

    parts.updater.run_independent = recording
    losses = parts.step(batch)
    assert seen == [["D", "D2"]] and {"D", "D2"} <= set(losses)
