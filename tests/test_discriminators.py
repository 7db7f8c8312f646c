"""Discriminators: official parameter counts, score-map shapes, multiscale structure, patch size, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import ganzoo
from ganzoo.errors import ComponentError
from ganzoo.layers import init_weights

PRESETS = ["basic", "basic_128", "basic_256", "basic_128_multi", "basic_256_multi", "nlayer", "multiscale", "pixel"]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def as_list(output: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return output if isinstance(output, list) else [output]


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("basic", {"input_nc": 6, "norm": "batch"}, 2_768_705),  # pix2pix
    ("basic", {"input_nc": 3, "norm": "instance"}, 2_764_737),  # CycleGAN
    ("basic_256_multi", {"input_nc": 3, "ndf": 64, "norm": "instance", "num_D": 2}, 3_458_978),  # BicycleGAN
    ("basic_128_multi", {"input_nc": 3, "norm": "instance", "num_D": 2}, 830_626),  # BicycleGAN
])
def test_official_parameter_counts(name: str, kwargs: dict, expected: int) -> None:
    with torch.device("meta"):
        net = ganzoo.build("discriminator", name, **kwargs)
    assert n_params(net) == expected


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("size", [32, 64])
def test_forward_shapes(name: str, size: int) -> None:
    net = ganzoo.build("discriminator", name, input_nc=4, ndf=8)
    size = max(size, net.size_multiple)
    outputs = as_list(net(torch.randn(2, 4, size, size)))
    for i, out in enumerate(outputs):
        side = (size + 2**i - 1) // 2**i  # each coarser scale sees ceil(size / 2)
        n_layers = 0 if name == "pixel" else (2 if "128" in name else 3)
        expected = side if name == "pixel" else side // 2**n_layers - 2
        assert out.shape == (2, 1, expected, expected)
        assert torch.isfinite(out).all()


def test_basic_preset_score_map_at_256px_is_30x30() -> None:
    with torch.device("meta"):
        net = ganzoo.build("discriminator", "basic", input_nc=6)
        assert net(torch.empty(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_basic_patch_is_70x70_pixels() -> None:
    net = ganzoo.build("discriminator", "basic", ndf=2, norm="none")
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    net(x)[0, 0, 15, 15].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)), as_tuple=True)
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


@pytest.mark.parametrize("num_D", [1, 2, 3])
def test_multiscale_returns_one_map_per_scale(num_D: int) -> None:
    net = ganzoo.build("discriminator", "basic_128_multi", ndf=8, num_D=num_D)
    outputs = net(torch.randn(2, 3, 64, 64))
    assert isinstance(outputs, list) and len(outputs) == num_D == net.num_D
    assert [o.shape[-1] for o in outputs] == [14, 6, 2][:num_D]


def test_multiscale_coarser_scales_have_fewer_filters() -> None:
    net = ganzoo.build("discriminator", "multiscale", ndf=64, num_D=3)
    first_widths = [scale[0].out_channels for scale in net.scales]
    assert first_widths == [64, 32, 16]


def test_multiscale_keeps_conv_biases_before_batch_norm_like_the_official_code() -> None:
    multi = ganzoo.build("discriminator", "multiscale", norm="batch", num_D=1)
    single = ganzoo.build("discriminator", "nlayer", norm="batch")
    multi_convs = [m for m in multi.modules() if isinstance(m, nn.Conv2d)]
    single_convs = [m for m in single.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in multi_convs)
    assert [c.bias is not None for c in single_convs] == [True, False, False, False, True]


def test_bicyclegan_single_scale_presets_default_to_instance_norm() -> None:
    assert ganzoo.get_component("discriminator", "basic_256").defaults()["norm"] == "instance"
    assert ganzoo.get_component("discriminator", "basic").defaults()["norm"] == "batch"
    net = ganzoo.build("discriminator", "basic_128")
    assert any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in net.modules()) == 2


def test_pixel_discriminator_scores_every_pixel_on_its_own() -> None:
    net = ganzoo.build("discriminator", "pixel", input_nc=6, ndf=8).eval()
    x = torch.randn(2, 6, 5, 7)
    out = net(x)
    assert out.shape == (2, 1, 5, 7)
    changed = x.clone()
    changed[:, :, 2, 3] += 1.0
    diff = (net(changed) - out).abs()[:, 0]
    assert diff[:, 2, 3].min() > 0
    diff[:, 2, 3] = 0
    assert diff.max() == 0


@pytest.mark.parametrize(("name", "norm"), [("basic", "batch"), ("basic_256_multi", "instance"),
                                            ("pixel", "batch"), ("basic_128", "none")])
def test_gradients_reach_every_parameter(name: str, norm: str) -> None:
    net = init_weights(ganzoo.build("discriminator", name, ndf=8, norm=norm), "normal")
    outputs = as_list(net(torch.randn(2, 3, 64, 64)))
    sum(o.square().mean() for o in outputs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("name", ["basic", "basic_128", "basic_128_multi", "basic_256_multi"])
def test_min_size_is_exact_and_too_small_inputs_are_clear_errors(name: str) -> None:
    net = ganzoo.build("discriminator", name, ndf=4)
    smallest = net.min_size
    assert net.size_multiple >= smallest
    assert min(o.shape[-1] for o in as_list(net(torch.randn(1, 3, smallest, smallest)))) == 1
    with pytest.raises(ComponentError, match=rf"at least {smallest}x{smallest} pixels.*got {smallest - 1}x"):
        net(torch.randn(1, 3, smallest - 1, 64))
    # Without the check, torch itself would fail on that input (an empty map, or a norm over a
    # single value): the minimum is not overcautious.
    stacks = net.scales if hasattr(net, "scales") else [net.model]
    with pytest.raises((RuntimeError, ValueError)):
        x = torch.randn(1, 3, smallest - 1, smallest - 1)
        for i, stack in enumerate(stacks):
            x = net.downsample(x) if i > 0 else x
            stack(x)


def test_wrong_channel_count_is_a_clear_error() -> None:
    net = ganzoo.build("discriminator", "basic", input_nc=6, ndf=4)
    with pytest.raises(ComponentError, match="input_nc=6 but got 3 channels"):
        net(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("basic", {"ndf": 0}, "ndf must be a positive integer"),
    ("nlayer", {"n_layers": 0}, "n_layers must be a positive integer"),
    ("multiscale", {"num_D": 0}, "num_D must be a positive integer"),
    ("multiscale", {"ndf": 2, "num_D": 4}, "ndf=2 is too small for num_D=4"),
    ("basic", {"norm": "bach"}, "unknown norm 'bach'"),
    ("basic", {"n_layers": 4}, "has no argument 'n_layers'"),
    ("pixel", {"num_D": 2}, "has no argument 'num_D'"),
])
def test_bad_arguments_are_component_errors(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        ganzoo.build("discriminator", name, **kwargs)


def test_every_registered_discriminator_builds_with_its_defaults() -> None:
    for name in ganzoo.list_components("discriminator")["discriminator"]:
        with torch.device("meta"):
            net = ganzoo.build("discriminator", name)
            side = net.size_multiple
            outputs = as_list(net(torch.empty(1, net.input_nc, side, 2 * side)))
        assert all(o.shape[:2] == (1, 1) for o in outputs)
        assert ganzoo.get_component("discriminator", name).description


PATCH_AND_PIXEL = [{"type": "basic_128_multi", "ndf": 8, "num_D": 2}, {"type": "pixel", "ndf": 8, "norm": "none"}]


def test_ensemble_returns_every_members_maps_in_order() -> None:
    torch.manual_seed(0)
    net = ganzoo.build("discriminator", "ensemble", input_nc=3, members=PATCH_AND_PIXEL).eval()
    x = torch.randn(2, 3, 32, 32)
    outputs = net(x)
    expected = [*net.members[0](x), net.members[1](x)]
    assert len(outputs) == 3
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert outputs[2].shape == (2, 1, 32, 32)  # the pixel member scores every pixel
    assert all(m.input_nc == 3 for m in net.members)


def test_ensemble_gan_loss_is_the_sum_of_its_members_losses() -> None:
    torch.manual_seed(0)
    net = ganzoo.build("discriminator", "ensemble", input_nc=3, members=PATCH_AND_PIXEL)
    loss = ganzoo.build("gan_loss", "lsgan")
    x = torch.randn(2, 3, 32, 32)
    total = loss(net(x), True)
    parts = loss(net.members[0](x), True) + loss(net.members[1](x), True)
    torch.testing.assert_close(total, parts)


def test_ensemble_size_limits_combine_its_members() -> None:
    net = ganzoo.build("discriminator", "ensemble", members=PATCH_AND_PIXEL)
    patch = net.members[0]
    assert net.min_size == patch.min_size and net.size_multiple == patch.size_multiple
    with pytest.raises(ComponentError, match=rf"at least {patch.min_size}x{patch.min_size} pixels"):
        net(torch.randn(1, 3, patch.min_size - 1, 32))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"members": []}, "members must be a non-empty list"),
    ({"members": [{"ndf": 8}]}, r"members\[0\] is .* expected a mapping with a 'type'"),
    ({"members": [{"type": "pixl"}]}, r"members\[0\]: unknown discriminator 'pixl'"),
    ({"members": [{"type": "pixel", "num_D": 2}]}, "has no argument 'num_D'"),
    ({"input_nc": 3, "members": [{"type": "pixel", "input_nc": 6}]}, r"members\[0\].input_nc is 6"),
    ({"members": [{"type": "ensemble"}]}, r"members\[0\] is itself an ensemble"),
])
def test_ensemble_bad_members_are_component_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        ganzoo.build("discriminator", "ensemble", **kwargs)
