"""Generators: official parameter counts, shapes, z injection, input checks and gradient flow."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import ganzoo.generators  # noqa: F401  (registers the generators)
from ganzoo import build, get_component, list_components
from ganzoo.errors import ComponentError
from ganzoo.generators import ResnetGenerator, UNetGenerator
from ganzoo.layers import init_weights


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def meta_build(name: str, **kwargs: object) -> nn.Module:
    """Build on the meta device: shapes and parameter counts without allocating or initialising memory."""
    with torch.device("meta"):
        return build("generator", name, **kwargs)


PIX2PIX = dict(input_nc=3, output_nc=3, ngf=64, norm="batch", use_dropout=True)
CYCLEGAN = dict(input_nc=3, output_nc=3, ngf=64, norm="instance", use_dropout=False)
BICYCLEGAN_EDGES2SHOES = dict(input_nc=1, output_nc=3, nz=8, ngf=64, norm="instance", nl="relu",
                              use_dropout=True, upsample="basic")


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("unet_256", PIX2PIX, 54_413_955),
        ("unet_128", PIX2PIX, 41_828_995),
        ("resnet_9blocks", CYCLEGAN, 11_378_179),
        ("resnet_6blocks", CYCLEGAN, 7_837_699),
        ("unet_256", {**BICYCLEGAN_EDGES2SHOES, "inject": "all"}, 54_792_579),
        ("unet_256", {**BICYCLEGAN_EDGES2SHOES, "inject": "input"}, 54_415_747),
        ("unet_128", {**BICYCLEGAN_EDGES2SHOES, "inject": "all"}, 42_143_107),
        ("unet_128", {**BICYCLEGAN_EDGES2SHOES, "inject": "input"}, 41_831_811),
    ],
)
def test_parameter_counts_match_the_official_networks(name: str, kwargs: dict, expected: int) -> None:
    assert count_params(meta_build(name, **kwargs)) == expected


def test_presets_equal_the_base_class_at_their_depth() -> None:
    assert count_params(meta_build("unet_256", **PIX2PIX)) == count_params(meta_build("unet", num_downs=8, **PIX2PIX))
    assert count_params(meta_build("resnet_9blocks", **CYCLEGAN)) == count_params(
        meta_build("resnet", n_blocks=9, **CYCLEGAN))


def test_presets_fix_their_depth() -> None:
    with pytest.raises(ComponentError, match="num_downs"):
        build("generator", "unet_256", num_downs=3)
    with pytest.raises(ComponentError, match="n_blocks"):
        build("generator", "resnet_6blocks", n_blocks=2)


@pytest.mark.parametrize(("name", "dropouts"), [("unet_256", 3), ("unet_128", 2), ("resnet_9blocks", 9)])
def test_dropout_sits_where_the_official_code_puts_it(name: str, dropouts: int) -> None:
    net = meta_build(name, use_dropout=True)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == dropouts
    assert not any(isinstance(m, nn.Dropout) for m in meta_build(name).modules())


def test_unet_bias_and_norm_placement_at_batch_norm() -> None:
    net = meta_build("unet_256", norm="batch")
    assert isinstance(net, UNetGenerator)
    # batch norm's shift makes conv biases redundant, except on the output conv which has no norm after it
    assert all(m.bias is None for m in net.down.modules() if isinstance(m, nn.Conv2d))
    output_conv = [m for m in net.up[0] if isinstance(m, nn.ConvTranspose2d)][0]
    assert output_conv.bias is not None
    # no norm right after the first conv (it sees the image) nor after the bottleneck conv (1x1 at 256 px)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.down[0])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.down[-1])
    assert isinstance(net.up[0][-1], nn.Tanh)


def test_attributes() -> None:
    g = meta_build("unet_128", input_nc=1, output_nc=2, nz=4)
    assert (g.input_nc, g.output_nc, g.nz, g.size_multiple) == (1, 2, 4, 128)
    r = meta_build("resnet_6blocks", input_nc=1, output_nc=2, nz=4)
    assert (r.input_nc, r.output_nc, r.nz, r.size_multiple) == (1, 2, 4, 4)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("inject", ["input", "all"])
@pytest.mark.parametrize("nz", [0, 4])
def test_unet_forward_shapes(size: int, inject: str, nz: int) -> None:
    g = build("generator", "unet", input_nc=1, output_nc=3, nz=nz, num_downs=5, ngf=8, inject=inject)
    x = torch.randn(2, 1, size, size)
    z = torch.randn(2, nz) if nz else None
    y = g(x, z)
    assert y.shape == (2, 3, size, size)
    assert y.abs().max() <= 1.0


@settings(max_examples=10, deadline=None)
@given(num_downs=st.integers(2, 5), multiple=st.integers(1, 2), inject=st.sampled_from(["input", "all"]))
def test_unet_any_depth_keeps_the_image_size(num_downs: int, multiple: int, inject: str) -> None:
    size = multiple * 2 ** num_downs
    g = build("generator", "unet", num_downs=num_downs, ngf=2, nz=2, inject=inject, norm="instance")
    assert g(torch.randn(1, 3, size, size), torch.randn(1, 2)).shape == (1, 3, size, size)


def test_inject_all_and_input_are_different_networks() -> None:
    common = dict(input_nc=1, output_nc=3, nz=8, num_downs=5, ngf=8, norm="instance")
    at_input = build("generator", "unet", inject="input", **common)
    everywhere = build("generator", "unet", inject="all", **common)
    first_conv_in = [block[0].in_channels for block in at_input.down]
    all_conv_in = [block[0].in_channels for block in everywhere.down]
    # only the first level sees z with inject=input; every level sees it with inject=all
    assert first_conv_in[0] == all_conv_in[0] == 1 + 8
    assert all(a + 8 == b for a, b in zip(first_conv_in[1:], all_conv_in[1:]))
    assert count_params(everywhere) > count_params(at_input)
    # without z there is nothing to inject: both choices build the same network
    plain = dict(common, nz=0)
    assert count_params(build("generator", "unet", inject="all", **plain)) == count_params(
        build("generator", "unet", inject="input", **plain))


def test_inject_from_leaves_the_outer_levels_without_z() -> None:
    common = dict(input_nc=1, output_nc=3, nz=8, num_downs=4, ngf=8, norm="batch", inject="all", z_grid=2)
    official = build("generator", "unet", **common)
    inner = build("generator", "unet", inject_from=2, **common)
    official_in = [block[0].in_channels for block in official.down]
    inner_in = [block[0].in_channels for block in inner.down]
    # z (2 channels on the 2x2 grid) joins levels 2 and 3 only
    assert official_in == [1 + 2, 8 + 2, 16 + 2, 32 + 2]
    assert inner_in == [1, 8, 16 + 2, 32 + 2]
    torch.manual_seed(0)
    inner.eval()
    x = torch.randn(2, 1, 32, 32)
    assert not torch.allclose(inner(x, torch.zeros(2, 8)), inner(x, torch.ones(2, 8)))
    # the default is the official network, parameter for parameter
    assert count_params(build("generator", "unet", inject_from=0, **common)) == count_params(official)


def test_z_changes_the_output() -> None:
    torch.manual_seed(0)
    g = build("generator", "unet", nz=4, num_downs=5, ngf=8, inject="all", norm="instance").eval()
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(g(x, torch.zeros(1, 4)), g(x, torch.ones(1, 4)))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_convolution_upsampling(mode: str) -> None:
    g = build("generator", "unet", num_downs=5, ngf=8, nz=2, upsample=mode)
    upsamplers = [m for m in g.modules() if isinstance(m, nn.Upsample)]
    assert len(upsamplers) == 5 and all(m.mode == mode for m in upsamplers)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert g(torch.randn(2, 3, 32, 32), torch.randn(2, 2)).shape == (2, 3, 32, 32)
    # 3x3 instead of 4x4 kernels on the up path
    assert count_params(g) < count_params(build("generator", "unet", num_downs=5, ngf=8, nz=2))


def test_wrong_image_size_is_a_clear_error() -> None:
    g = meta_build("unet_256")
    with pytest.raises(ComponentError, match=r"unet_256 needs height and width divisible by 256 "
                                             r"\(8 down-samplings\); got 100x100"):
        g(torch.zeros(1, 3, 100, 100, device="meta"))
    small = build("generator", "unet", num_downs=5, ngf=4)
    with pytest.raises(ComponentError, match=r"divisible by 32 \(5 down-samplings\); got 32x48"):
        small(torch.zeros(1, 3, 32, 48))
    with pytest.raises(ComponentError, match=r"resnet_9blocks needs height and width divisible by 4.*got 30x30"):
        meta_build("resnet_9blocks")(torch.zeros(1, 3, 30, 30, device="meta"))


def test_z_errors() -> None:
    g = build("generator", "unet", nz=8, num_downs=5, ngf=4)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ComponentError, match=r"nz=8 and needs a latent code z of shape \(N, 8\)"):
        g(x)
    with pytest.raises(ComponentError, match=r"needs z of shape \(2, 8\).*got shape \(2, 4\)"):
        g(x, torch.randn(2, 4))
    with pytest.raises(ComponentError, match=r"needs z of shape \(2, 8\).*got shape \(1, 8\)"):
        g(x, torch.randn(1, 8))
    with pytest.raises(ComponentError, match="nz=0"):
        build("generator", "unet", num_downs=5, ngf=4)(x, torch.randn(2, 8))
    with pytest.raises(ComponentError, match="nz=4 and needs a latent code"):
        build("generator", "resnet", nz=4, ngf=4, n_blocks=1)(x)


def test_wrong_channel_count_is_a_clear_error() -> None:
    g = build("generator", "unet", input_nc=1, num_downs=5, ngf=4)
    with pytest.raises(ComponentError, match="input_nc=1 but got 3 channels"):
        g(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("unet", {"upsample": "bicubic"}, "upsample='bicubic'.*basic, bilinear, nearest"),
        ("unet", {"inject": "middle"}, "inject='middle'.*input, all"),
        ("unet", {"num_downs": 1}, "num_downs must be an integer >= 2"),
        ("unet", {"nz": 4, "num_downs": 5, "inject": "all", "inject_from": 5}, "inject_from must be a level from 0"),
        ("unet", {"nz": 4, "inject": "input", "inject_from": 1}, "inject_from=1 needs inject='all'"),
        ("unet_128", {"ngf": 0}, "unet_128.*ngf must be an integer >= 1"),
        ("unet", {"norm": "batchnorm"}, "unknown norm 'batchnorm'"),
        ("unet", {"nl": "relux"}, "unknown activation 'relux'"),
        ("resnet", {"padding_type": "circular"}, "padding_type='circular'.*reflect, replicate, zero"),
        ("resnet_9blocks", {"nz": -1}, "resnet_9blocks.*nz must be an integer >= 0"),
    ],
)
def test_bad_arguments_name_the_argument(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        meta_build(name, **kwargs)


def all_parameters_get_gradients(net: nn.Module, *inputs: torch.Tensor) -> None:
    net.train()
    y = net(*inputs)
    (y * torch.randn_like(y)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("inject", ["input", "all"])
def test_gradient_reaches_every_unet_parameter(inject: str) -> None:
    torch.manual_seed(0)
    # batch norm: no conv bias sits right before a mean-subtracting norm, so every gradient is non-zero
    g = build("generator", "unet", nz=3, num_downs=5, ngf=4, norm="batch", use_dropout=True, inject=inject,
              upsample="bilinear")
    all_parameters_get_gradients(g, torch.randn(2, 3, 32, 32), torch.randn(2, 3))


def test_gradient_reaches_every_resnet_parameter() -> None:
    torch.manual_seed(0)
    g = build("generator", "resnet", nz=2, ngf=4, n_blocks=2, norm="batch", use_dropout=True)
    all_parameters_get_gradients(g, torch.randn(2, 3, 16, 16), torch.randn(2, 2))


def test_gradient_reaches_z() -> None:
    g = build("generator", "unet", nz=3, num_downs=5, ngf=4, norm="instance", inject="all")
    z = torch.randn(2, 3, requires_grad=True)
    g(torch.randn(2, 3, 32, 32), z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_resnet_with_z() -> None:
    g = build("generator", "resnet", input_nc=1, output_nc=3, nz=4, ngf=8, n_blocks=2, norm="instance")
    assert isinstance(g, ResnetGenerator)
    first_conv = next(m for m in g.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1 + 4
    y = g(torch.randn(2, 1, 32, 32), torch.randn(2, 4))
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1.0
    without_z = build("generator", "resnet", input_nc=1, output_nc=3, ngf=8, n_blocks=2, norm="instance")
    assert count_params(g) - count_params(without_z) == 4 * 8 * 7 * 7


@pytest.mark.parametrize("padding_type", ["reflect", "replicate", "zero"])
def test_resnet_padding_types(padding_type: str) -> None:
    g = build("generator", "resnet", ngf=4, n_blocks=1, padding_type=padding_type)
    assert g(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_registered_names_and_descriptions() -> None:
    names = list_components("generator")["generator"]
    for name in ("unet", "unet_128", "unet_256", "resnet", "resnet_6blocks", "resnet_9blocks"):
        assert name in names
        assert get_component("generator", name).description


@pytest.mark.parametrize("name", ["unet", "unet_128", "unet_256", "resnet", "resnet_6blocks", "resnet_9blocks"])
def test_every_generator_builds_with_defaults_and_initialises_on_meta(name: str) -> None:
    net = meta_build(name)
    init_weights(net, "normal", 0.02)
    assert net.nz == 0 and net.input_nc == 3 and net.output_nc == 3
    assert net.size_multiple >= 4


def test_bicyclegan_unet_keeps_conv_biases_under_batch_norm() -> None:
    """BicycleGAN's official U-Net blocks always have conv biases; pix2pix's drop them before batch norm."""
    import ganzoo

    with torch.device("meta"):
        bicycle = ganzoo.build("generator", "unet", num_downs=5, input_nc=1, output_nc=3, nz=8, ngf=8, norm="batch")
        pix2pix = ganzoo.build("generator", "unet", num_downs=5, input_nc=1, output_nc=3, nz=0, ngf=8, norm="batch")
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    assert all(m.bias is not None for m in bicycle.modules() if isinstance(m, convs))
    assert any(m.bias is None for m in pix2pix.modules() if isinstance(m, convs))
