"""Every registered component, built with its defaults and checked against its family's contract.

The parameter lists come from the registry at collection time, so a new component (a plugin's
included) is tested as soon as it is registered, the way timm's ``test_models.py`` covers every
model. A network that cannot be exported must say why in a class attribute
``export_unsupported = "reason"``; the export test then skips with that reason.
"""
from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch.optim import lr_scheduler

import ganzoo
from ganzoo.registry import get_component

NETWORK_KINDS = ("generator", "encoder", "discriminator")
COMPONENTS = ganzoo.list_components()

# A prefix component is listed as "timm:<model_name>"; test it through a tiny real model.
PREFIX_EXAMPLES = {"timm": "test_resnet"}

# Narrow networks keep the whole suite cheap on a 2-core CPU.
REDUCED_WIDTHS = {"ngf": 8, "ndf": 8, "nef": 8}
MIN_SIZE, MAX_SIZE, BATCH = 32, 256, 2


def _buildable_name(listed: str) -> str:
    head, sep, tail = listed.partition(":")
    if sep and tail == "<model_name>":
        return f"{head}:{PREFIX_EXAMPLES.get(head, head)}"
    return listed


def _names(kind: str) -> list[str]:
    return [_buildable_name(n) for n in COMPONENTS.get(kind, [])]


def _params(kind: str) -> list[Any]:
    names = _names(kind)
    if not names:  # keep a visible marker instead of silently collecting nothing
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no {kind} registered"))]
    return names


def build_network(kind: str, name: str, extra: dict[str, Any]) -> nn.Module:
    """Build ``name`` with its defaults plus ``extra``, narrowed when it accepts a width argument."""
    accepted = get_component(kind, name).signature().parameters
    kwargs = {k: v for k, v in REDUCED_WIDTHS.items() if k in accepted}
    return ganzoo.build(kind, name, **kwargs, **extra)


def _network_cases() -> list[Any]:
    """One case per network with its defaults, plus latent-code variants of generators taking ``nz``."""
    cases = []
    for kind in NETWORK_KINDS:
        for name in _names(kind):
            cases.append(pytest.param(kind, name, {}, id=f"{kind}-{name}"))
            if kind != "generator":
                continue
            accepted = get_component(kind, name).signature().parameters
            if "nz" not in accepted:
                continue
            # "inject" is the official z-injection switch (BicycleGAN's add_input / add_all).
            variants: list[dict[str, Any]] = (
                [{"nz": 8, "inject": "input"}, {"nz": 8, "inject": "all"}] if "inject" in accepted else [{"nz": 8}]
            )
            for extra in variants:
                label = ",".join(f"{k}={v}" for k, v in extra.items())
                cases.append(pytest.param(kind, name, extra, id=f"{kind}-{name}[{label}]"))
    return cases


def network_inputs(kind: str, net: nn.Module) -> tuple[torch.Tensor, ...]:
    """Inputs of the smallest size the network accepts (skips the test when that is too large)."""
    multiple = int(getattr(net, "size_multiple", 1))
    size = max(MIN_SIZE, multiple)
    if size % multiple:
        size = multiple * (size // multiple + 1)
    if size > MAX_SIZE:
        pytest.skip(f"needs inputs of at least {size}px (size_multiple={multiple}), above the {MAX_SIZE}px test cap")
    x = torch.randn(BATCH, net.input_nc, size, size)
    if kind == "generator" and getattr(net, "nz", 0) > 0:
        return x, torch.randn(BATCH, net.nz)
    return (x,)


def check_output_contract(kind: str, net: nn.Module, inputs: tuple[torch.Tensor, ...], out: Any) -> list[torch.Tensor]:
    """Assert the family's output contract; return the output tensors."""
    x = inputs[0]
    if kind == "generator":
        assert isinstance(out, torch.Tensor)
        assert out.shape == (BATCH, net.output_nc, x.shape[2], x.shape[3])
        assert out.min() >= -1.0 and out.max() <= 1.0, "generator output must be in [-1, 1]"
        return [out]
    if kind == "encoder":
        assert isinstance(out, tuple) and len(out) == 2, "encoder must return (mu, logvar)"
        mu, logvar = out
        assert mu.shape == (BATCH, net.nz)
        if net.vae:
            assert logvar is not None and logvar.shape == (BATCH, net.nz)
            return [mu, logvar]
        assert logvar is None, "an encoder with vae=False returns logvar=None"
        return [mu]
    scales = [out] if isinstance(out, torch.Tensor) else list(out)
    assert scales, "discriminator returned an empty list"
    for scale in scales:
        assert isinstance(scale, torch.Tensor) and scale.shape[0] == BATCH
    return scales


def _attributes(kind: str) -> tuple[str, ...]:
    return {
        "generator": ("input_nc", "output_nc", "nz", "size_multiple"),
        "encoder": ("input_nc", "nz", "vae", "size_multiple"),
        "discriminator": ("input_nc", "size_multiple"),
    }[kind]


@pytest.mark.parametrize(("kind", "name", "extra"), _network_cases())
class TestNetworks:
    def test_has_description(self, kind: str, name: str, extra: dict[str, Any]) -> None:
        assert get_component(kind, name).description, f"{kind} {name!r} needs a one-line docstring"

    def test_forward_backward(self, kind: str, name: str, extra: dict[str, Any]) -> None:
        net = build_network(kind, name, extra)
        for attribute in _attributes(kind):
            assert hasattr(net, attribute), f"{kind} {name!r} lacks the contract attribute {attribute!r}"
        inputs = network_inputs(kind, net)
        outputs = check_output_contract(kind, net, inputs, net(*inputs))
        for t in outputs:
            assert torch.isfinite(t).all()
        sum(t.float().mean() for t in outputs).backward()
        no_grad = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"parameters without a gradient: {no_grad}"
        bad_grad = [n for n, p in net.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad_grad, f"parameters with non-finite gradients: {bad_grad}"

    def test_export(self, kind: str, name: str, extra: dict[str, Any]) -> None:
        net = build_network(kind, name, extra)
        reason = getattr(net, "export_unsupported", None)
        if reason:
            pytest.skip(f"{kind} {name!r} cannot be exported: {reason}")
        net.eval()
        inputs = network_inputs(kind, net)
        with torch.no_grad():
            expected = net(*inputs)
        exported = torch.export.export(net, inputs)
        with torch.no_grad():
            got = exported.module()(*inputs)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", _params("gan_loss"))
def test_gan_loss(name: str) -> None:
    loss = ganzoo.build("gan_loss", name)
    assert isinstance(loss, nn.Module)
    single = torch.randn(BATCH, 1, 6, 6, requires_grad=True)
    scales = [torch.randn(BATCH, 1, 6, 6, requires_grad=True), torch.randn(BATCH, 1, 3, 3, requires_grad=True)]
    for prediction in (single, scales):
        for target_is_real, for_discriminator in ((True, True), (False, True), (True, False)):
            value = loss(prediction, target_is_real, for_discriminator=for_discriminator)
            assert isinstance(value, torch.Tensor) and value.dim() == 0 and torch.isfinite(value)
            value.backward()
    for t in (single, *scales):
        assert t.grad is not None and torch.isfinite(t.grad).all()


@pytest.mark.parametrize("name", _params("norm"))
def test_norm(name: str) -> None:
    cls = get_component("norm", name).factory
    assert isinstance(getattr(cls, "conv_bias", None), bool), f"norm {name!r} needs a boolean conv_bias"
    layer = ganzoo.build("norm", name, num_features=4)
    x = torch.randn(BATCH, 4, 8, 8)
    y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", _params("activation"))
def test_activation(name: str) -> None:
    act = ganzoo.build("activation", name)
    assert isinstance(act, nn.Module)
    x = torch.randn(BATCH, 4, 8, 8)
    y = act(x.clone())  # clone: many activations work in place
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", _params("init"))
def test_init(name: str) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4))
    before = [p.detach().clone() for p in net.parameters()]
    result = ganzoo.build("init", name, gain=0.02)(net)
    assert result is net
    after = list(net.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert not torch.equal(before[0], after[0]), "the conv weights were not re-initialised"


@pytest.mark.parametrize("name", _params("scheduler"))
def test_scheduler(name: str) -> None:
    def make() -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler]:
        opt = torch.optim.Adam([nn.Parameter(torch.zeros(2))], lr=1e-3)
        return opt, ganzoo.build("scheduler", name, optimizer=opt, total_steps=10)

    opt, sched = make()
    assert isinstance(sched, lr_scheduler.LRScheduler)
    takes_metric = "metrics" in inspect.signature(sched.step).parameters
    for _ in range(10):
        opt.step()
        if takes_metric:
            sched.step(1.0)
        else:
            sched.step()
        lr = opt.param_groups[0]["lr"]
        assert 0.0 <= lr <= 1e-3 + 1e-12
    opt2, sched2 = make()
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert sched2.state_dict() == sched.state_dict()
