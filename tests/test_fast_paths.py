"""Every speed-up keeps the maths: each fast path against the plain fp32 formulation, on tiny CPU batches.

BicycleGAN's single backward (against the official two passes) is tested in ``test_models.py``.
"""
from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import torch
import torch.nn as nn

from ganzoo.models import BicycleGAN, CycleGAN, Pix2Pix
from ganzoo.models.assembly import compile_networks, make_optimizer, run_stacked
from ganzoo.models.image_pool import ImagePool
from ganzoo.registry import build

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
