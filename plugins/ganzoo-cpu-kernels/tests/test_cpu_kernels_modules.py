"""The tuned modules: nn.Conv2d's results through every route, fallbacks, which layers switch, whole networks."""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn
from cpu_kernels_testing import REWRITTEN_ROUTES, conv_pair

from ganzoo_cpu_kernels import cpu_convs
from ganzoo_cpu_kernels.conv_routes import RouteTable
from ganzoo_cpu_kernels.cpu_convs import TunedConv2d, TunedConvTranspose2d, use_tuned_cpu_convs


@pytest.mark.parametrize("route", REWRITTEN_ROUTES)
@pytest.mark.parametrize("needs", ["both", "input only (D frozen in the G step)", "weights only (a real input)"])
def test_tuned_conv_module_matches_nn_conv2d_in_float32(needs: str, route: str, force_route: Callable) -> None:
    force_route(route, everywhere=True)
    fast, plain = conv_pair(128, 128, 3, 1)
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
def test_tuned_conv_double_backward_matches_for_gradient_penalties(route: str, force_route: Callable) -> None:
    force_route(route, everywhere=True)
    fast, plain = conv_pair(64, 64, 3, 1)
    penalties = []
    for conv in (fast, plain):
        x = torch.randn(1, 64, 6, 6, generator=torch.Generator().manual_seed(3), requires_grad=True)
        (grad_x,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        penalties.append(torch.autograd.grad(grad_x.square().sum(), conv.weight)[0])
    # Winograd's forward rounds at ~1e-5 relative, which the penalty's second derivative amplifies
    scale = penalties[1].abs().max().item()
    torch.testing.assert_close(penalties[0], penalties[1], rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("where", ["channels_last", "bf16 autocast", "float64", "no route table"])
def test_tuned_conv_falls_back_to_pytorch_where_it_does_not_apply(where: str, force_route: Callable) -> None:
    force_route("winograd")
    fast, plain = conv_pair(8, 8, 3, 1)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    context: Any = torch.autocast("cpu", torch.bfloat16) if where == "bf16 autocast" else contextlib.nullcontext()
    if where == "channels_last":
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    if where == "float64":
        fast.double(), plain.double()
        x = x.detach().double().requires_grad_()
    if where == "no route table":  # a tuned class made by hand, never switched in
        del fast.route_table
        assert fast.route_table is None
    with context:
        out, expected = fast(x), plain(x)
    assert "Winograd" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_only_eligible_convolutions_are_switched() -> None:
    class OwnConv(nn.Conv2d):
        pass

    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 4, 2, 1), nn.ConvTranspose2d(8, 8, 4, 2, 1),
                        nn.Conv2d(8, 8, 3, 1, 1, padding_mode="reflect"), nn.Conv2d(8, 8, 3, 1, 1, groups=2),
                        nn.Conv2d(8, 8, 3, padding="same"), OwnConv(8, 8, 3), nn.Conv1d(8, 8, 3))
    table = RouteTable()
    assert use_tuned_cpu_convs(net, table) == 3
    assert [type(m).__name__ for m in net] == ["TunedConv2d", "TunedConv2d", "TunedConvTranspose2d", "Conv2d",
                                               "Conv2d", "Conv2d", "OwnConv", "Conv1d"]
    assert all(net[i].route_table is table for i in range(3))
    other = RouteTable()
    assert use_tuned_cpu_convs(net, other) == 3 and net[0].route_table is other  # a second prepare: its table


def test_a_deep_copy_shares_the_route_table() -> None:
    """An EMA copy of a generator computes with the generator's kernels (and the table's lock is no state)."""
    import pickle

    fast, _ = conv_pair(8, 8, 3, 1)
    twin = copy.deepcopy(fast)
    assert twin.route_table is fast.route_table and type(twin) is TunedConv2d
    revived = pickle.loads(pickle.dumps(fast))
    assert revived.route_table.choices() == fast.route_table.choices()


def test_routes_offered_follow_the_layer() -> None:
    def routes(module: nn.Module, shape: tuple[int, ...], requires_grad: bool = True) -> list[str]:
        use_tuned_cpu_convs(module, RouteTable())
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


# -- whole networks of each family, every eligible convolution forced through one route ------------------
def _networks() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    """Small networks of every family the three models use, and an input shape (built on demand)."""
    from ganzoo.discriminators.multiscale import MultiscaleDiscriminator
    from ganzoo.discriminators.nlayer import NLayerDiscriminator
    from ganzoo.encoders.resnet import ResNetEncoder
    from ganzoo.generators.resnet import ResnetGenerator
    from ganzoo.generators.unet import UNetGenerator

    return {
        "unet_batch": (lambda: UNetGenerator(3, 3, num_downs=5, ngf=8, norm="batch"), (2, 3, 32, 32)),
        "resnet_instance": (lambda: ResnetGenerator(3, 3, ngf=8, norm="instance", n_blocks=6), (2, 3, 32, 32)),
        "patchgan": (lambda: NLayerDiscriminator(6, ndf=8, n_layers=3, norm="batch"), (2, 6, 32, 32)),
        "multiscale": (lambda: MultiscaleDiscriminator(3, ndf=8, n_layers=2, norm="instance", num_D=2),
                       (2, 3, 32, 32)),
        "resnet_encoder": (lambda: ResNetEncoder(3, nz=4, nef=8, n_blocks=4, norm="instance", vae=True),
                           (2, 3, 32, 32)),
    }


NETWORKS = list(_networks())


def forward_and_grads(net: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """The network's outputs on ``x`` and the gradients of a fixed random projection of them
    (every parameter's and the input's)."""
    x = x.detach().requires_grad_()
    out = net(x)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    g = torch.Generator().manual_seed(7)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, [x, *params.values()])
    return [o.detach() for o in outs], dict(zip(["input", *params], grads))


def assert_same_pass(fast: tuple[list, dict], plain: tuple[list, dict], rtol: float, atol: float) -> None:
    """Outputs and gradients equal to ``rtol``, and to ``atol`` times the largest output or gradient:
    a parameter whose true gradient is 0 (a bias ahead of a norm) gets rounding noise in proportion
    to the loss's scale, not to its own gradient."""
    outputs, grads = plain
    assert fast[1].keys() == grads.keys()
    scale = max(1.0, *(t.abs().max().item() for t in [*outputs, *grads.values()]))
    for f, p in zip(fast[0], outputs):
        torch.testing.assert_close(f, p, rtol=rtol, atol=atol * scale)
    for name, p in grads.items():
        torch.testing.assert_close(fast[1][name], p, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


def _pair(name: str) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    make, shape = _networks()[name]
    torch.manual_seed(0)
    plain = make()
    fast = copy.deepcopy(plain)
    assert use_tuned_cpu_convs(fast, RouteTable()) > 0
    x = torch.rand(shape, generator=torch.Generator().manual_seed(42)) * 2 - 1
    return fast, plain, x


@pytest.mark.parametrize("name, route", [(name, route) for name in NETWORKS
                                         for route in ("winograd", "grads_by_conv_and_gemm", "gemm")
                                         if not (name.startswith("unet") and route != "gemm")])  # no stride 1
def test_tuned_routes_give_the_same_pass_through_each_network(name: str, route: str, force_route: Callable) -> None:
    taken = force_route(route, everywhere=route == "gemm")
    fast, plain, x = _pair(name)
    fast_pass = forward_and_grads(fast, x)
    assert route in taken
    assert_same_pass(fast_pass, forward_and_grads(plain, x), rtol=1e-4, atol=1e-5)
    if name.startswith("unet"):
        with torch.no_grad():  # inference takes the same route
            torch.testing.assert_close(fast(x[:1]), plain(x[:1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_gemm_convolutions_give_the_same_pass_in_float64(name: str, force_route: Callable,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every convolution through im2col + GEMM, in float64, equals the plain pass to 1e-10: in float32,
    normalisations that divide by a spatial spread made mostly of rounding (a nearly constant map at
    this tiny initialisation) amplify the two formulations' different rounding; the maths are the same."""
    taken = force_route("gemm", everywhere=True)
    monkeypatch.setattr(cpu_convs, "plain_cpu_float32", lambda x, weight: x.is_contiguous())  # float64 too
    fast, plain, x = _pair(name)
    fast.double(), plain.double()
    fast_pass = forward_and_grads(fast, x.double())
    assert taken and set(taken) == {"gemm"}
    assert_same_pass(fast_pass, forward_and_grads(plain, x.double()), rtol=1e-10, atol=1e-12)
