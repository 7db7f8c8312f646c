"""Every speed-up keeps the maths: each fast path against the plain fp32 formulation, on tiny CPU batches.

BicycleGAN's single backward (against the official two passes) is tested in ``test_models.py``.
"""
from __future__ import annotations

import contextlib
import copy
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn

from ganzoo.models import BicycleGAN, CycleGAN, Pix2Pix
from ganzoo.models.assembly import compile_networks, make_optimizer, run_stacked
from ganzoo.models.image_pool import ImagePool
from ganzoo.registry import build
from ganzoo.training.branches import BranchRunner

SIZE = 32


def _train(**overrides: Any) -> dict[str, Any]:
    return {"batch_size": 4, "optimizer": {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999]},
            "precision": "fp32", "seed": 0, **overrides}


def bicyclegan_recipe(**train: Any) -> dict[str, Any]:
    nets = {
        "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "nz": 4, "ngf": 8, "norm": "instance",
              "use_dropout": False, "inject": "all"},
        "E": {"type": "resnet_128", "input_nc": 3, "nz": 4, "nef": 8, "norm": "instance", "vae": True},
        "D": {"type": "basic_128_multi", "input_nc": 3, "ndf": 8, "norm": "instance", "num_D": 2},
        "D2": {"type": "basic_128_multi", "input_nc": 3, "ndf": 8, "norm": "instance", "num_D": 2},
    }
    return {"model": {"type": "bicyclegan", "nz": 4, "networks": nets, "init": {"type": "xavier", "gain": 0.02},
                      "gan_loss": "lsgan", "losses": dict(BicycleGAN.loss_weights), "use_same_D": False,
                      "conditional_D": False},
            "train": _train(**train)}


def pix2pix_recipe(**train: Any) -> dict[str, Any]:
    nets = {"G": {"type": "unet", "num_downs": 5, "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "batch",
                  "use_dropout": False},
            "D": {"type": "basic", "input_nc": 6, "ndf": 8, "norm": "batch"}}
    return {"model": {"type": "pix2pix", "networks": nets, "init": {"type": "normal", "gain": 0.02},
                      "gan_loss": "vanilla", "losses": {"gan": 1.0, "l1": 100.0}},
            "train": _train(**{"batch_size": 2, **train})}


def cyclegan_recipe(**train: Any) -> dict[str, Any]:
    g = {"type": "resnet_6blocks", "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "instance"}
    d = {"type": "basic", "input_nc": 3, "ndf": 8, "norm": "instance"}
    return {"model": {"type": "cyclegan", "networks": {"G_A": g, "G_B": dict(g), "D_A": d, "D_B": dict(d)},
                      "init": {"type": "normal", "gain": 0.02}, "gan_loss": "lsgan",
                      "losses": dict(CycleGAN.loss_weights), "pool_size": 50},
            "train": _train(**{"batch_size": 2, **train})}


MODELS = {
    "bicyclegan": (BicycleGAN, bicyclegan_recipe, 1),
    "pix2pix": (Pix2Pix, pix2pix_recipe, 3),
    "cyclegan": (CycleGAN, cyclegan_recipe, 3),
}


def make(name: str, **train: Any) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    cls, recipe, a_nc = MODELS[name]
    torch.manual_seed(0)
    model = cls(recipe(**train))
    n = recipe()["train"]["batch_size"]
    g = torch.Generator().manual_seed(42)
    model_batch = {"A": torch.rand(n, a_nc, SIZE, SIZE, generator=g) * 2 - 1,
                   "B": torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1}
    return model, model_batch


def step_and_grads(model: nn.Module, batch: dict[str, torch.Tensor]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One train_step from a fixed RNG state; returns its losses and every parameter's last gradient."""
    torch.manual_seed(1)
    losses = model.train_step(batch)
    grads = {f"{n}.{k}": p.grad.detach().clone() for n, net in model.networks.items()
             for k, p in net.named_parameters() if p.grad is not None}
    return losses, grads


@pytest.mark.parametrize("name", list(MODELS))
def test_a_step_frees_every_network_s_old_gradients_before_its_first_forward(name: str) -> None:
    """The last step's gradients must not sit through this step's backwards (pix2pix kept G's
    through D's update, with G's activations alive: the step's peak of memory)."""
    model, batch = make(name)
    model.train_step(batch)
    params = [p for net in model.networks.values() for p in net.parameters()]
    assert any(p.grad is not None for p in params)  # the last step's, still there after it
    seen: list[int] = []

    def count_old_gradients(module: nn.Module, args: Any) -> None:
        if not seen:
            seen.append(sum(p.grad is not None for p in params))

    hooks = [net.register_forward_pre_hook(count_old_gradients) for net in model.networks.values()]
    try:
        model.train_step(batch)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [0]


def assert_same_step(fast: tuple[dict, dict], plain: tuple[dict, dict], rtol: float, atol: float) -> None:
    (fast_losses, fast_grads), (plain_losses, plain_grads) = fast, plain
    assert fast_losses.keys() == plain_losses.keys()
    for key in plain_losses:
        torch.testing.assert_close(fast_losses[key].float(), plain_losses[key].float(), rtol=rtol, atol=atol,
                                   msg=lambda m: f"loss {key}: {m}")
    assert fast_grads.keys() == plain_grads.keys()
    for key in plain_grads:
        # Reordered sums move single elements by float rounding: compare whole tensors by norm.
        error = (fast_grads[key] - plain_grads[key]).norm()
        assert error <= rtol * plain_grads[key].norm() + atol, f"gradient {key}: relative error {error}"


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


@pytest.mark.parametrize("name,g_norm", [("bicyclegan", "instance"), ("bicyclegan", "batch"), ("pix2pix", "batch"),
                                         ("cyclegan", "instance")])
@pytest.mark.parametrize("each_at_once", [True, False], ids=["each_at_once", "collected"])
def test_updates_inside_the_backward_give_the_same_weights_bit_for_bit(name: str, g_norm: str, each_at_once: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """train.step_in_backward: each parameter updated as its gradient completes equals one step after
    the backward, weights and Adam moments alike. BicycleGAN with batch norm calls G once per branch,
    so the frozen encoder's backward (detached weights of E) and E's own accumulation are not tied
    by the graph: the engine's order must still run the former first."""
    from ganzoo.training import steps_in_backward

    if each_at_once:  # else these tiny gradients are all collected and applied as the backward ends
        monkeypatch.setattr(steps_in_backward, "FLUSH_BYTES", 1)
    cls, recipe_of, _ = MODELS[name]
    _, batch = make(name)
    models = []
    for in_backward in (False, True):
        recipe = recipe_of()
        for net_name, spec in recipe["model"]["networks"].items():
            if net_name.startswith("G"):
                spec["norm"] = g_norm
        torch.manual_seed(0)
        model = cls(recipe)
        model.precision.step_in_backward = in_backward
        g_params = [p for n, net in model.networks.items() if n.startswith("G") for p in net.parameters()]
        complete: list[int] = []
        hooks = [p.register_post_accumulate_grad_hook(
            lambda p: complete.append(sum(q.grad is not None for q in g_params))) for p in g_params]
        torch.manual_seed(1)
        for _ in range(3):
            model.train_step(batch)
        for hook in hooks:
            hook.remove()
        models.append((model, complete))
    (plain, plain_counts), (fast, fast_counts) = models
    for (key, p), q in zip(plain.networks.state_dict().items(), fast.networks.state_dict().values()):
        assert torch.equal(p, q), key
    for opt_name, opt in plain.optimizers.items():
        fast_opt = fast.optimizers[opt_name]
        for p, q in zip(opt.param_groups[0]["params"], fast_opt.param_groups[0]["params"]):
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(opt.state[p][key], fast_opt.state[q][key]), (opt_name, key)
    assert all(p.grad is None for p in fast.parameters())  # freed as they were used
    # after the backward, all of G's gradients existed together; inside it, never more than a few
    assert max(plain_counts) == len([p for n, net in plain.networks.items() if n.startswith("G")
                                     for p in net.parameters()])
    assert max(fast_counts) <= (2 if each_at_once else len(g_params))


def test_explicit_optimizer_flags_are_kept() -> None:
    opt = make_optimizer([nn.Parameter(torch.zeros(2))], {"type": "adam", "foreach": False}, torch.device("cpu"))
    assert not opt.defaults.get("fused") and opt.defaults["foreach"] is False


# -- the discriminator's weights are frozen during the generator step --------------------------------------
@pytest.mark.parametrize("name,g_group,d_names", [
    ("bicyclegan", "GE", ("D", "D2")), ("pix2pix", "G", ("D",)), ("cyclegan", "G", ("D_A", "D_B"))])
def test_generator_backward_leaves_discriminator_grads_alone(name: str, g_group: str, d_names: tuple[str, ...]
                                                             ) -> None:
    model, batch = make(name)
    model.train_step(batch)  # pix2pix's D step runs first: its D grads exist before the G backward
    d_params = [p for d in d_names for p in model.networks[d].parameters()]
    seen: list[bool] = []
    update = model.precision.update
    model.precision.step_in_backward = False  # D's gradients then outlive its update

    def spying_update(loss: torch.Tensor, optimizers: list[torch.optim.Optimizer], group: str) -> None:
        if group == g_group:
            before = [None if p.grad is None else p.grad.clone() for p in d_params]
            assert not any(p.requires_grad for p in d_params)
            update(loss, optimizers, group)
            seen.append(all((b is None and p.grad is None) or (b is not None and torch.equal(b, p.grad))
                            for b, p in zip(before, d_params)))
        else:
            update(loss, optimizers, group)

    model.precision.update = spying_update
    model.train_step(batch)
    assert seen == [True]
    assert all(p.requires_grad for p in d_params)  # switched back on for the next D step


# -- one stacked call instead of two under instance norm ---------------------------------------------------
def test_stacked_calls_equal_separate_calls_with_instance_norm() -> None:
    torch.manual_seed(0)
    G = build("generator", "unet", num_downs=5, input_nc=1, output_nc=3, nz=4, ngf=8, norm="instance",
              use_dropout=False, inject="all")
    D = build("discriminator", "basic_128_multi", input_nc=3, ndf=8, norm="instance", num_D=2)
    A, z1, z2 = torch.randn(2, 1, SIZE, SIZE), torch.randn(2, 4), torch.randn(2, 4)
    stacked = run_stacked(G, (A, z1), (A, z2))
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


def test_cyclegan_step_runs_three_generator_calls_equal_to_the_official_six(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.models import cyclegan

    stacked, batch = make("cyclegan")
    calls: dict[str, list[int]] = {"G_A": [], "G_B": []}
    for name, sizes in calls.items():
        stacked.networks[name].register_forward_pre_hook(lambda m, args, sizes=sizes: sizes.append(args[0].shape[0]))
    stacked_losses, stacked_grads = step_and_grads(stacked, batch)
    n = batch["A"].shape[0]
    assert calls == {"G_A": [3 * n], "G_B": [2 * n, n]}

    monkeypatch.setattr(cyclegan, "run_stacked", lambda net, *args, **kw: [net(a) for a in args])
    separate, _ = make("cyclegan")
    assert_same_step((stacked_losses, stacked_grads), step_and_grads(separate, batch), rtol=1e-4, atol=1e-6)


def test_bicyclegan_stack_branches_runs_G_once_under_batch_norm() -> None:
    """model.stack_branches: one G call for both branches, batch statistics over both halves."""
    recipe = bicyclegan_recipe()
    recipe["model"]["networks"]["G"]["norm"] = "batch"
    recipe["model"]["stack_branches"] = True
    model = BicycleGAN(recipe, "cpu")
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


# -- vectorised image pool ---------------------------------------------------------------------------------
class LoopPool:
    """The official per-image history pool, drawing the same random numbers as ImagePool."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.images = size, []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        free = min(self.size - len(self.images), images.shape[0])
        rest = images.shape[0] - free
        if rest > 0:
            swap = torch.rand(rest, generator=self.generator) > 0.5
            slots = torch.randint(0, self.size, (rest,), generator=self.generator)
        for i, image in enumerate(images):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif swap[i - free]:
                j = int(slots[i - free])
                out.append(self.images[j].clone())
                self.images[j] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


@pytest.mark.parametrize("size,batch", [(3, 8), (5, 2), (4, 1), (2, 16)])
def test_vectorised_pool_matches_the_per_image_loop(size: int, batch: int) -> None:
    pool, reference = ImagePool(size, seed=7), LoopPool(size, seed=7)
    rng = random.Random(0)
    for step in range(12):
        images = torch.full((batch, 1, 2, 2), 0.0) + torch.arange(batch).view(-1, 1, 1, 1) + 100 * step
        images = images + rng.random()
        torch.testing.assert_close(pool.query(images), reference.query(images), rtol=0, atol=0)
        torch.testing.assert_close(pool.images[: pool.count], torch.stack(reference.images), rtol=0, atol=0)


def test_vectorised_pool_resumes_from_its_state_dict() -> None:
    pool = ImagePool(4, seed=3)
    for step in range(3):
        pool.query(torch.randn(3, 2, 4, 4))
    clone = ImagePool(4, seed=99)
    clone.load_state_dict(pool.state_dict())
    images = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(clone.query(images), pool.query(images), rtol=0, atol=0)
    torch.testing.assert_close(clone.images, pool.images, rtol=0, atol=0)


# -- memory format, precision and compile switches ---------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_channels_last_gives_the_same_step(name: str) -> None:
    plain_model, batch = make(name)
    fast_model, _ = make(name)
    fast_model.networks.to(memory_format=torch.channels_last)
    fast_batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
    assert_same_step(step_and_grads(fast_model, fast_batch), step_and_grads(plain_model, batch),
                     rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_autocast_on_the_cpu_stays_close_to_fp32(name: str) -> None:
    plain = step_and_grads(*make(name))
    fast_losses, fast_grads = step_and_grads(*make(name, precision="bf16"))
    plain_losses, plain_grads = plain
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with GradScaler needs CUDA")
@pytest.mark.parametrize("name", list(MODELS))
def test_fp16_with_grad_scalers_on_cuda_stays_close_to_fp32(name: str) -> None:
    cls, recipe, _ = MODELS[name]
    torch.manual_seed(0)
    plain = cls(recipe(), "cuda")
    torch.manual_seed(0)
    fast = cls(recipe(precision="fp16"), "cuda")
    _, batch = make(name)
    batch = {k: v.cuda() for k, v in batch.items()}
    plain_losses, _ = step_and_grads(plain, batch)
    fast_losses, _ = step_and_grads(fast, batch)
    for key, value in plain_losses.items():
        torch.testing.assert_close(fast_losses[key].float(), value, rtol=5e-2, atol=5e-3)
    assert fast.precision.scalers  # one GradScaler per update group


@pytest.mark.slow
def test_compiled_networks_give_the_same_step() -> None:
    plain_model, batch = make("cyclegan")
    fast_model, _ = make("cyclegan")
    compile_networks(fast_model)
    assert fast_model.networks.state_dict().keys() == plain_model.networks.state_dict().keys()
    assert_same_step(step_and_grads(fast_model, batch), step_and_grads(plain_model, batch), rtol=1e-3, atol=1e-5)


def test_the_fused_finiteness_check_matches_the_plain_one_and_leaves_gradients_alone() -> None:
    from ganzoo.training.precision import grads_are_finite

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


@pytest.mark.parametrize("has_hardware, precision, device, warns", [
    (False, "bf16", "cpu", True),   # emulated bf16: slower than fp32, so say so
    (True, "bf16", "cpu", False),
    (None, "bf16", "cpu", False),   # torch cannot tell: no guess
    (False, "fp32", "cpu", False),
    (False, "bf16", "cuda", False),
])
def test_bf16_without_cpu_hardware_is_flagged(monkeypatch: pytest.MonkeyPatch, has_hardware: bool | None,
                                              precision: str, device: str, warns: bool) -> None:
    from ganzoo.training import precision as precision_module

    monkeypatch.setattr(precision_module, "cpu_has_bf16_hardware", lambda: has_hardware)
    warning = precision_module.Precision(precision, torch.device(device)).warning
    assert (warning is not None) == warns
    if warns:
        assert "train.precision=bf16" in warning and "fp32" in warning


def test_cpu_bf16_hardware_is_read_from_torch() -> None:
    from ganzoo.training.precision import cpu_has_bf16_hardware

    found = cpu_has_bf16_hardware()
    if hasattr(torch.cpu, "get_capabilities"):
        capabilities = torch.cpu.get_capabilities()
        assert found == bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    else:
        assert found is None


# -- independent parts of a step side by side (train.parallel_branches) ----------------------------------
def test_parallel_discriminator_updates_give_the_same_steps(torch_threads: Callable[[int], None]) -> None:
    torch_threads(2)
    plain_model, batch = make("bicyclegan", parallel_branches=False)
    fast_model, _ = make("bicyclegan")  # on by default
    assert fast_model.branches.side_by_side() and not plain_model.branches.side_by_side()
    threads_seen: dict[str, int] = {}
    update = fast_model._update_discriminator

    def spying_update(name: str, *args: Any, **kwargs: Any) -> torch.Tensor:
        threads_seen[name] = threading.get_ident()
        return update(name, *args, **kwargs)

    fast_model._update_discriminator = spying_update
    # Steps 2 and 3 start from the weights and Adam moments that the side-by-side updates left; their
    # gradients would differ if those were wrong. (Weights themselves are no test: biases ahead of instance
    # norm have gradients of rounding noise only, which Adam scales up to full steps.)
    for _ in range(3):
        assert_same_step(step_and_grads(fast_model, batch), step_and_grads(plain_model, batch),
                         rtol=1e-3, atol=1e-5)
    assert set(threads_seen) == {"D", "D2"} and len(set(threads_seen.values())) == 2  # truly on two threads
    assert torch.get_num_threads() == 2  # the step's intra-op threads are back after the updates
    # with updates inside each thread's backward (train.step_in_backward), the same weights bit for bit
    inside, _ = make("bicyclegan")
    inside.precision.step_in_backward = True
    for _ in range(3):
        torch.manual_seed(1)
        inside.train_step(batch)
    for (key, p), q in zip(fast_model.networks.state_dict().items(), inside.networks.state_dict().values()):
        assert torch.equal(p, q), key


def test_parallel_branches_run_in_turn_where_they_cannot_pay(torch_threads: Callable[[int], None]) -> None:
    torch_threads(1)
    assert not BranchRunner(True, "cpu").side_by_side()  # one core's worth of threads: nothing to share
    torch_threads(2)
    assert BranchRunner(True, "cpu").side_by_side()
    assert not BranchRunner(True, "cuda").side_by_side()  # CUDA kernels are asynchronous already
    assert not BranchRunner(False, "cpu").side_by_side()
    runner = BranchRunner(True, "cpu")
    assert runner.run([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]
    copy.deepcopy(runner)  # models are deep-copied (EMA, tests): its thread pool is not copied along


def test_a_failing_branch_raises_after_the_others_finish_and_restores_the_threads(
        torch_threads: Callable[[int], None]) -> None:
    torch_threads(2)
    finished = threading.Event()

    def slow() -> int:
        time.sleep(0.2)
        finished.set()
        return 1

    def broken() -> int:
        raise ValueError("bad branch")

    with pytest.raises(ValueError, match="bad branch"):
        BranchRunner(True, "cpu").run([broken, slow])
    assert finished.is_set()  # the other branch was not left running on the weights
    assert torch.get_num_threads() == 2


# -- tuned CPU convolutions (train.tuned_cpu_convs): stride-1 gradients and im2col + GEMM -----------------
CONV_CASES = [  # (batch, in, out, size, kernel, padding, bias): GEMM weight path from 128 channels on
    (2, 128, 128, 6, (3, 3), (0, 0), True),  # a ResNet block's convolution after its reflection pad
    (1, 128, 256, 5, (4, 4), (1, 1), True),  # PatchGAN's stride-1 layer
    (2, 8, 16, 9, (3, 3), (1, 1), False),  # few channels: oneDNN keeps the weight gradient
    (1, 16, 1, 7, (4, 4), (1, 1), True),  # a one-channel PatchGAN head
    (2, 4, 3, 12, (7, 7), (0, 0), True),  # the ResNet generator's last layer
    (1, 130, 129, 4, (3, 1), (1, 0), False),  # non-square kernel and padding
]


def force_conv_route(monkeypatch: pytest.MonkeyPatch, route: str, everywhere: bool = False) -> None:
    """Send every tuned convolution through ``route`` where it applies (else PyTorch's own), instead of
    timing the routes, so that tiny test shapes exercise each one. ``everywhere``: the GEMM route also
    where its column matrix would outgrow the weights and the input."""
    from ganzoo.layers import conv_routes, cpu_convs

    def forced(signature: str, timed: bool, timed_routes: Any) -> str:
        return route if route in timed_routes() else conv_routes.NATIVE

    monkeypatch.setattr(conv_routes, "choose_route", forced)
    if everywhere:
        monkeypatch.setattr(cpu_convs, "_columns_fit", lambda *args: True)


@pytest.mark.parametrize("routes", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["both rewritten", "input by conv", "weights by gemm", "onednn"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[1]}to{c[2]}_k{c[4][0]}x{c[4][1]}_p{c[5][0]}{c[5][1]}")
def test_stride_one_conv_gradients_equal_autograd_in_float64(case: tuple, routes: tuple[bool, bool]) -> None:
    from ganzoo.layers.conv_backward import StrideOneConv2d

    n, c_in, c_out, size, kernel, padding, bias = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, w) + ((b,) if bias else ())
    fast_out = StrideOneConv2d.apply(x, w, b, padding, *routes)
    plain_out = torch.nn.functional.conv2d(x, w, b, 1, padding)
    torch.testing.assert_close(fast_out, plain_out, rtol=0, atol=0)
    grad_out = torch.randn(plain_out.shape, generator=g, dtype=torch.float64)
    fast = torch.autograd.grad(fast_out, inputs, grad_out)
    plain = torch.autograd.grad(plain_out, inputs, grad_out)
    for name, f, p in zip(("input", "weight", "bias"), fast, plain):
        torch.testing.assert_close(f, p, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


def _conv_pair(c_in: int, c_out: int, kernel: int, padding: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    from ganzoo.layers.cpu_convs import TunedConv2d, use_tuned_cpu_convs

    torch.manual_seed(0)
    plain = nn.Conv2d(c_in, c_out, kernel, 1, padding)
    fast = copy.deepcopy(plain)
    assert use_tuned_cpu_convs(fast) == 1 and type(fast) is TunedConv2d
    assert fast.state_dict().keys() == plain.state_dict().keys()
    return fast, plain


REWRITTEN_ROUTES = ["gemm", "winograd", "grad_x_by_conv", "grad_w_by_gemm", "grads_by_conv_and_gemm"]


@pytest.mark.parametrize("route", REWRITTEN_ROUTES)
@pytest.mark.parametrize("needs", ["both", "input only (D frozen in the G step)", "weights only (a real input)"])
def test_tuned_conv_module_matches_nn_conv2d_in_float32(needs: str, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    force_conv_route(monkeypatch, route, everywhere=True)
    fast, plain = _conv_pair(128, 128, 3, 1)
    if needs.startswith("input"):
        for conv in (fast, plain):
            conv.requires_grad_(False)
    x = torch.randn(2, 128, 8, 8, requires_grad=not needs.startswith("weights"))
    grad_out = torch.randn(2, 128, 8, 8)
    results = []
    for conv in (fast, plain):
        out = conv(x)
        wanted = [t for t in (x, conv.weight, conv.bias) if t.requires_grad]
        results.append((out, torch.autograd.grad(out, wanted, grad_out)))
    (fast_out, fast_grads), (plain_out, plain_grads) = results
    taken = type(fast_out.grad_fn).__name__
    if route == "winograd":
        assert "WinogradConv2d" in taken
    elif route.startswith("grad") and route in fast.routes(x):
        assert "StrideOneConv2d" in taken
    torch.testing.assert_close(fast_out, plain_out, rtol=1e-4, atol=1e-4)
    assert len(fast_grads) == len(plain_grads) == {"both": 3, "input": 1, "weights": 2}[needs.split()[0]]
    for f, p in zip(fast_grads, plain_grads):
        torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("route", REWRITTEN_ROUTES)
def test_tuned_conv_double_backward_matches_for_gradient_penalties(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    force_conv_route(monkeypatch, route, everywhere=True)
    fast, plain = _conv_pair(64, 64, 3, 1)
    penalties = []
    for conv in (fast, plain):
        x = torch.randn(1, 64, 6, 6, generator=torch.Generator().manual_seed(3), requires_grad=True)
        (grad_x,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        penalties.append(torch.autograd.grad(grad_x.square().sum(), conv.weight)[0])
    # Winograd's forward rounds at ~1e-5 relative, which the penalty's second derivative amplifies
    scale = penalties[1].abs().max().item()
    torch.testing.assert_close(penalties[0], penalties[1], rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("where", ["channels_last", "bf16 autocast", "float64"])
def test_tuned_conv_falls_back_to_pytorch_where_it_does_not_apply(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    force_conv_route(monkeypatch, "winograd")
    fast, plain = _conv_pair(8, 8, 3, 1)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    context: Any = torch.autocast("cpu", torch.bfloat16) if where == "bf16 autocast" else contextlib.nullcontext()
    if where == "channels_last":
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    if where == "float64":
        fast.double(), plain.double()
        x = x.detach().double().requires_grad_()
    with context:
        out, expected = fast(x), plain(x)
    assert "Winograd" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_only_eligible_convolutions_are_switched() -> None:
    from ganzoo.layers.cpu_convs import use_tuned_cpu_convs

    class OwnConv(nn.Conv2d):
        pass

    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 4, 2, 1), nn.ConvTranspose2d(8, 8, 4, 2, 1),
                        nn.Conv2d(8, 8, 3, 1, 1, padding_mode="reflect"), nn.Conv2d(8, 8, 3, 1, 1, groups=2),
                        nn.Conv2d(8, 8, 3, padding="same"), OwnConv(8, 8, 3), nn.Conv1d(8, 8, 3))
    assert use_tuned_cpu_convs(net) == 3
    assert [type(m).__name__ for m in net] == ["TunedConv2d", "TunedConv2d", "TunedConvTranspose2d", "Conv2d",
                                               "Conv2d", "Conv2d", "OwnConv", "Conv1d"]


def test_routes_offered_follow_the_layer() -> None:
    from ganzoo.layers.cpu_convs import TunedConvTranspose2d, use_tuned_cpu_convs

    def routes(module: nn.Module, shape: tuple[int, ...], requires_grad: bool = True) -> list[str]:
        use_tuned_cpu_convs(module)
        return module.routes(torch.empty(shape, requires_grad=requires_grad))

    # a ResNet block at 128 px: every stride-1 route, but no im2col (9x the input, more than the weights)
    assert routes(nn.Conv2d(256, 256, 3), (1, 256, 34, 34)) == ["native", "winograd", "grad_x_by_conv",
                                                                "grad_w_by_gemm", "grads_by_conv_and_gemm"]
    assert routes(nn.Conv2d(256, 256, 3), (1, 256, 34, 34), requires_grad=False) == [
        "native", "winograd", "grad_w_by_gemm"]
    # unet_256's inner levels: weights outweigh the maps, so im2col + GEMM; stride 2: no stride-1 route
    assert routes(nn.Conv2d(512, 512, 4, 2, 1), (1, 512, 16, 16)) == ["native", "gemm"]
    assert routes(nn.Conv2d(64, 3, 7), (1, 64, 134, 134))[:2] == ["native", "grad_x_by_conv"]  # the image head
    up = TunedConvTranspose2d(128, 3, 4, 2, 1)
    assert up.routes(torch.empty(1, 128, 128, 128)) == ["native", "gemm"]  # a U-Net's image head
    assert TunedConvTranspose2d(256, 64, 4, 2, 1).routes(torch.empty(1, 256, 64, 64)) == ["native"]
    with torch.no_grad():
        assert routes(nn.Conv2d(256, 256, 3), (1, 256, 34, 34)) == ["native", "winograd"]


@pytest.mark.parametrize("route", ["winograd", "grads_by_conv_and_gemm"])
@pytest.mark.parametrize("name", list(MODELS))
def test_tuned_conv_routes_give_the_same_step(name: str, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.layers.cpu_convs import use_tuned_cpu_convs

    force_conv_route(monkeypatch, route)
    plain_model, batch = make(name)
    fast_model, _ = make(name)
    assert use_tuned_cpu_convs(fast_model.networks) > 0
    # atol as for channels-last: the biases before instance norm have a true gradient of 0 and get rounding noise
    assert_same_step(step_and_grads(fast_model, batch), step_and_grads(plain_model, batch), rtol=1e-4, atol=1e-5)


def test_bench_and_train_apply_the_switch_unless_off_or_compiled() -> None:
    from ganzoo.layers.cpu_convs import TunedConv2d, TunedConvTranspose2d
    from ganzoo.models.assembly import apply_speed_switches

    def switched(train: dict[str, Any]) -> int:
        model, _ = make("cyclegan")
        apply_speed_switches(model, train)
        return sum(isinstance(m, (TunedConv2d, TunedConvTranspose2d)) for m in model.networks.modules())

    assert switched({}) > 0 and switched({"tuned_cpu_convs": True}) > 0
    assert switched({"tuned_cpu_convs": False}) == 0
    assert switched({"compile": True}) == 0


_FAULTS_OF_REPEATED_STEPS = """
import resource, sys, torch
from ganzoo.training.cpu_allocator import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
x = torch.ones(16 << 20)  # 64 MiB
faults = []
for _ in range(8):  # a "step" makes and frees two tensors of that size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * 2
    z = y + 1
    del y, z
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[-3:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the allocator setting is glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    """train.reuse_freed_memory: once steps repeat, their tensors take memory freed by the last
    step instead of pages the kernel maps and zeroes afresh (32768 page faults a step here)."""
    faults = {}
    for mode in ("default", "reuse"):
        done = subprocess.run([sys.executable, "-c", _FAULTS_OF_REPEATED_STEPS, mode], capture_output=True,
                              text=True, check=True)
        faults[mode] = int(done.stdout.split()[-1])
    assert faults["default"] > 3 * 16384 and faults["reuse"] < 1000, faults


def test_speed_switches_set_the_allocator_on_the_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.models import assembly

    calls: list[bool] = []
    monkeypatch.setattr(assembly, "reuse_freed_memory", lambda: calls.append(True) or True)
    model, _ = make("pix2pix")
    assembly.apply_speed_switches(model, {"tuned_cpu_convs": False})
    assembly.apply_speed_switches(model, {"tuned_cpu_convs": False, "reuse_freed_memory": False})
    model.device = torch.device("cuda")
    assembly.apply_speed_switches(model, {"tuned_cpu_convs": False})
    assert calls == [True]


# -- route measurement (ganzoo/layers/conv_routes.py) ----------------------------------------------------
@pytest.fixture
def empty_route_table() -> Any:
    from ganzoo.layers import conv_routes

    saved = conv_routes.route_table()
    conv_routes.clear_route_table()
    yield conv_routes
    conv_routes.clear_route_table()
    conv_routes.restore_route_table(saved)


def test_fastest_route_takes_the_fastest_and_keeps_native_within_the_margin(empty_route_table: Any) -> None:
    import time

    def taking(seconds: float) -> Any:
        return lambda: time.sleep(seconds)

    routes = empty_route_table
    assert routes.fastest_route({"native": taking(0.03), "gemm": taking(0.005), "winograd": taking(0.015)}) == "gemm"
    assert routes.fastest_route({"native": taking(0.005), "gemm": taking(0.03)}) == "native"
    # a rewrite within the margin of the native kernels is not worth leaving them for
    assert routes.fastest_route({"native": taking(0.0200), "gemm": taking(0.0199)}, rounds=2) == "native"


def test_choose_route_measures_once_and_skips_small_layers(empty_route_table: Any) -> None:
    routes = empty_route_table
    calls: list[str] = []

    def timed_routes() -> dict[str, Any]:
        calls.append("measured")
        return {"native": lambda: None, "gemm": lambda: None}

    assert not routes.worth_timing(routes.TIMED_MIN_FLOPS - 1, routes.TIMED_MIN_WEIGHTS - 1)
    assert routes.worth_timing(routes.TIMED_MIN_FLOPS, 0) and routes.worth_timing(0, routes.TIMED_MIN_WEIGHTS)
    assert routes.choose_route("small", False, timed_routes) == "native"
    assert calls == [] and routes.route_table() == {}
    first = routes.choose_route("big", True, timed_routes)
    assert calls == ["measured"] and routes.route_table() == {"big": first}
    assert routes.choose_route("big", True, timed_routes) == first and len(calls) == 1
    routes.restore_route_table({"big": "gemm"})  # a resumed run's table wins
    assert routes.choose_route("big", True, timed_routes) == "gemm" and len(calls) == 1


@pytest.mark.parametrize("gemm_seconds, chosen", [((0.03, 0.002), "native"), ((0.012, 0.002), "gemm")],
                         ids=["fast_only_in_one_phase", "faster_on_average"])
def test_a_choice_is_timed_once_more_later_and_the_mean_of_both_decides(
        gemm_seconds: tuple[float, float], chosen: str, empty_route_table: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Native takes 10 ms in both timings. A rewrite 30 ms in a slow phase and 2 ms in a quiet one
    (16 ms on average) stays out; one 12 ms and 2 ms (7 ms on average) comes in, though its first
    timing alone lost."""
    import time

    routes = empty_route_table
    phases = iter([{"native": 0.01, "gemm": gemm_seconds[0]}, {"native": 0.01, "gemm": gemm_seconds[1]}])
    timings: list[str] = []

    def timed_routes() -> dict[str, Any]:
        timings.append("timed")
        seconds = next(phases)
        return {name: (lambda s=s: time.sleep(s)) for name, s in seconds.items()}

    monkeypatch.setattr(routes, "RETIME_AFTER_SECONDS", 3600.0)
    assert routes.choose_route("layer", True, timed_routes) == "native"
    assert routes.choose_route("layer", True, timed_routes) == "native" and timings == ["timed"]  # not yet due
    monkeypatch.setattr(routes, "RETIME_AFTER_SECONDS", 0.0)
    assert routes.choose_route("layer", True, timed_routes) == chosen and len(timings) == 2
    assert routes.choose_route("layer", True, timed_routes) == chosen and len(timings) == 2  # final now
    assert routes.route_table() == {"layer": chosen}


def test_two_threads_meeting_one_signature_time_it_once_each_round(empty_route_table: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """BicycleGAN's D and D2 updates run side by side and share their layers' signatures."""
    import threading
    import time

    routes = empty_route_table
    monkeypatch.setattr(routes, "RETIME_AFTER_SECONDS", 0.0)
    timings: list[int] = []
    errors: list[BaseException] = []

    def timed_routes() -> dict[str, Any]:
        timings.append(1)
        return {"native": lambda: time.sleep(0.001), "gemm": lambda: time.sleep(0.002)}

    def worker() -> None:
        try:
            for _ in range(20):
                assert routes.choose_route("shared", True, timed_routes) == "native"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(timings) == 2  # timed, then timed again once, then final


def test_restored_choices_are_final_and_bench_does_not_retime(empty_route_table: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    routes = empty_route_table
    monkeypatch.setattr(routes, "RETIME_AFTER_SECONDS", 0.0)

    def never() -> dict[str, Any]:
        raise AssertionError("timed again")

    routes.restore_route_table({"layer": "winograd"})
    assert routes.choose_route("layer", True, never) == "winograd"
    monkeypatch.setattr(routes, "retiming", False)
    assert routes.choose_route("other", True, lambda: {"native": lambda: None}) == "native"
    assert routes.choose_route("other", True, never) == "native"  # timed once, not again


def test_a_real_layer_is_measured_and_its_choice_recorded(empty_route_table: Any) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    fast, plain = _conv_pair(128, 128, 3, 0)
    x = torch.randn(2, 128, 18, 18, requires_grad=True)  # 2 * 128 * 128 * 9 * 2 * 16 * 16 flops: measured
    with FlopCounterMode(display=False):  # the FLOP counter must not see (or count) the probes
        fast(x)
    assert empty_route_table.route_table() == {}
    out = fast(x)
    (signature, route), = empty_route_table.route_table().items()
    assert route in fast.routes(x) and "x(2, 128, 18, 18) grads111" in signature
    torch.testing.assert_close(out, plain(x), rtol=1e-4, atol=1e-4)
    assert x.grad is None and fast.weight.grad is None  # the probes leave no gradients behind


def test_a_route_that_cannot_compute_the_call_falls_back_to_native(empty_route_table: Any) -> None:
    fast, plain = _conv_pair(128, 128, 5, 2)  # 5x5: no Winograd
    x = torch.randn(1, 128, 16, 16, requires_grad=True)
    from ganzoo.layers.cpu_convs import _signature

    empty_route_table.restore_route_table({_signature(fast, x): "winograd", "unrelated": "no-such-route"})
    out = fast(x)
    assert "ConvolutionBackward" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, plain(x), rtol=0, atol=0)


def test_small_convolutions_keep_pytorchs_own_function(empty_route_table: Any) -> None:
    fast, _ = _conv_pair(8, 8, 3, 1)  # far below the measured size: no custom function, nothing timed
    out = fast(torch.randn(2, 8, 6, 6, requires_grad=True))
    assert "ConvolutionBackward" in type(out.grad_fn).__name__
    assert empty_route_table.route_table() == {}


@pytest.mark.parametrize("case", [(3, 1, 5, 7, 9, 1, True), (3, 2, 3, 4, 8, 0, False), (3, 1, 4, 6, 7, 2, True),
                                  (3, 2, 6, 3, 12, 1, True), (3, 1, 2, 2, 5, 0, False),
                                  (4, 2, 5, 6, 8, 1, True), (4, 1, 3, 4, 9, 0, False), (4, 1, 4, 5, 7, 3, True),
                                  (4, 2, 3, 2, 6, 0, True), (4, 1, 2, 3, 10, 2, False)],
                         ids=["3x3_odd_p1", "3x3_even_p0", "3x3_odd_p2", "3x3_two_tiles", "3x3_one_tile",
                              "4x4_patchgan_p1", "4x4_two_tiles", "4x4_p3", "4x4_one_tile", "4x4_p2"])
@pytest.mark.parametrize("one_image_at_a_time", [False, True], ids=["whole_batch", "image_chunks"])
def test_winograd_convolution_and_gradients_equal_pytorchs_in_float64(
        case: tuple, one_image_at_a_time: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.layers import winograd
    from ganzoo.layers.winograd import WinogradConv2d

    kernel, n, c_in, c_out, size, padding, bias = case
    if one_image_at_a_time:  # the transforms' chunks of the batch, as a large layer's
        monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", 1)
        n += 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    fast = WinogradConv2d.apply(x, w, b, (padding, padding))
    plain = torch.nn.functional.conv2d(x, w, b, 1, padding)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    inputs = (x, w) + ((b,) if bias else ())
    grad_out = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    for f, p in zip(torch.autograd.grad(fast, inputs, grad_out), torch.autograd.grad(plain, inputs, grad_out)):
        torch.testing.assert_close(f, p, rtol=1e-12, atol=1e-12)


def test_winograd_workspaces_are_private_aligned_memory() -> None:
    """Shared anonymous memory (Python's mmap default) is shmem on Linux, which gets no huge pages."""
    import sys

    from ganzoo.layers.winograd import _HUGE_PAGE, _mapped_buffer

    buffer = _mapped_buffer(3 * 1024 * 1024, torch.float32)
    assert buffer.numel() == 3 * 1024 * 1024 and buffer.dtype == torch.float32
    assert buffer.data_ptr() % _HUGE_PAGE == 0
    buffer.fill_(1.5)
    assert buffer.sum().item() == 1.5 * buffer.numel()
    if sys.platform.startswith("linux"):
        address = buffer.data_ptr()
        for line in open("/proc/self/maps"):
            span, *rest = line.split()
            low, high = (int(v, 16) for v in span.split("-"))
            if low <= address < high:
                perms, path = rest[0], rest[4:]
                assert perms.endswith("p") and not path, line  # private, anonymous
                break
        else:
            raise AssertionError("workspace mapping not found")


GEMM_CASES = [  # (transposed, batch, in, out, size, kernel, stride, padding, output_padding, dilation, bias)
    (False, 2, 6, 5, 8, 4, 2, 1, 0, 1, True),  # a U-Net down level
    (False, 1, 5, 7, 6, 3, 1, 1, 0, 1, False),
    (False, 2, 4, 3, 9, 3, 1, 2, 0, 2, True),  # dilated
    (True, 2, 6, 5, 4, 4, 2, 1, 0, 1, True),  # a U-Net up level
    (True, 1, 5, 3, 5, 3, 2, 1, 1, 1, True),  # the ResNet generator's upsampling (output_padding 1)
    (True, 2, 4, 4, 3, 3, 1, 0, 0, 2, False),
]


@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: f"{'T' if c[0] else 'C'}{c[1]}x{c[2]}to{c[3]}_s{c[6]}")
def test_gemm_convolutions_equal_pytorchs_in_float64(case: tuple) -> None:
    from ganzoo.layers.gemm_conv import conv2d_by_gemm, conv_transpose2d_by_gemm

    transposed, n, c_in, c_out, size, k, stride, padding, out_pad, dilation, bias = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    shape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
    w = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    pairs = (stride, stride), (padding, padding), (dilation, dilation)
    if transposed:
        gemm = conv_transpose2d_by_gemm(x, w, b, pairs[0], pairs[1], (out_pad, out_pad), pairs[2])
        plain = torch.nn.functional.conv_transpose2d(x, w, b, stride, padding, out_pad, 1, dilation)
    else:
        gemm = conv2d_by_gemm(x, w, b, *pairs)
        plain = torch.nn.functional.conv2d(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(gemm, plain, rtol=1e-12, atol=1e-12)
    inputs = (x, w) + ((b,) if bias else ())
    grad_out = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    for f, p in zip(torch.autograd.grad(gemm, inputs, grad_out), torch.autograd.grad(plain, inputs, grad_out)):
        torch.testing.assert_close(f, p, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_gemm_convolutions_give_the_same_step_in_float64(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every convolution of a whole training step through im2col + GEMM, in float64, equals the plain step.

    In float32 the CycleGAN test step differs by ~2e-3 in G_A's gradients (pix2pix and BicycleGAN: ~1e-6),
    while in float64 it agrees to 1e-14: at this tiny initialisation G_B's output is nearly constant,
    so the next generator's instance norms divide by a spatial spread that is mostly rounding, and
    GEMM and oneDNN round differently per pixel. Rounding amplified, not different maths.
    """
    from ganzoo.layers import cpu_convs

    force_conv_route(monkeypatch, "gemm", everywhere=True)  # every conv by GEMM
    monkeypatch.setattr(cpu_convs, "plain_cpu_float32", lambda x, weight: x.is_contiguous())  # float64 too
    plain_model, batch = make(name)
    fast_model, _ = make(name)
    plain_model.double(), fast_model.double()
    assert cpu_convs.use_tuned_cpu_convs(fast_model.networks) > 0
    batch = {k: v.double() for k, v in batch.items()}
    assert_same_step(step_and_grads(fast_model, batch), step_and_grads(plain_model, batch), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["pix2pix", "bicyclegan"])
def test_gemm_convolutions_give_the_same_step_in_float32(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.layers.cpu_convs import use_tuned_cpu_convs

    force_conv_route(monkeypatch, "gemm", everywhere=True)
    plain_model, batch = make(name)
    fast_model, _ = make(name)
    assert use_tuned_cpu_convs(fast_model.networks) > 0
    assert_same_step(step_and_grads(fast_model, batch), step_and_grads(plain_model, batch), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # inference takes the same route
        A = batch["A"][:1]
        args = (A, torch.zeros(1, 4)) if name == "bicyclegan" else (A,)
        torch.testing.assert_close(fast_model.networks["G"](*args), plain_model.networks["G"](*args),
                                   rtol=1e-4, atol=1e-5)
