"""Encoders: official parameter counts, output shapes, VAE/point-estimate heads, timm backbones, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ganzoo
from ganzoo.errors import ComponentError
from ganzoo.layers import init_weights

BUILTIN_ENCODERS = ["resnet", "resnet_128", "resnet_256", "conv", "conv_128", "conv_256"]
TINY_TIMM = "timm:test_resnet"


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet_256", 2_590_032), ("conv_256", 2_760_656), ("resnet_128", 1_344_080), ("conv_128", 1_711_824)],
)
def test_official_parameter_counts(name: str, expected: int) -> None:
    with torch.device("meta"):
        net = ganzoo.build("encoder", name, input_nc=3, nz=8, nef=64, norm="instance", nl="lrelu", vae=True)
    assert n_params(net) == expected


@pytest.mark.parametrize(
    ("name", "size_multiple"),
    [("resnet_128", 16), ("resnet_256", 32), ("conv_128", 32), ("conv_256", 64), ("resnet", 16), ("conv", 16)],
)
def test_size_multiple_follows_the_halvings(name: str, size_multiple: int) -> None:
    with torch.device("meta"):
        net = ganzoo.build("encoder", name)
    assert net.size_multiple == size_multiple
    assert (net.input_nc, net.nz, net.vae) == (3, 8, True)


@pytest.mark.parametrize("name", BUILTIN_ENCODERS)
@pytest.mark.parametrize("multiple", [1, 2])
def test_forward_shapes(name: str, multiple: int) -> None:
    net = ganzoo.build("encoder", name, input_nc=2, nz=5, nef=8)
    size = net.size_multiple * multiple
    mu, logvar = net(torch.randn(3, 2, size, size + net.size_multiple))
    assert mu.shape == (3, 5)
    assert logvar is not None and logvar.shape == (3, 5)
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()


@pytest.mark.parametrize("name", ["resnet_128", "conv_128", TINY_TIMM])
def test_point_estimate_has_no_logvar(name: str) -> None:
    vae = ganzoo.build("encoder", name, nz=4, vae=True)
    point = ganzoo.build("encoder", name, nz=4, vae=False)
    mu, logvar = point(torch.randn(2, 3, 32, 32))
    assert mu.shape == (2, 4) and logvar is None
    assert point.vae is False
    # Only the log-variance head goes away.
    assert n_params(vae) - n_params(point) == n_params(vae.head.fc_logvar)


@pytest.mark.parametrize("name", ["resnet_128", "conv_128"])
def test_adaptive_pooling_matches_the_official_fixed_pool_at_128px(name: str) -> None:
    net = ganzoo.build("encoder", name, nef=4, nz=3).eval()
    x = torch.randn(2, 3, 128, 128)
    features = net.features(x)
    assert features.shape[-2:] == (8, 8)
    official = F.avg_pool2d(features, 8).flatten(1)
    mu, logvar = net(x)
    torch.testing.assert_close(mu, net.head.fc_mu(official))
    torch.testing.assert_close(logvar, net.head.fc_logvar(official))


@pytest.mark.parametrize(("name", "norm"), [("resnet_256", "instance"), ("conv_256", "instance"),
                                           ("conv_128", "batch"), ("resnet_128", "none")])
def test_gradients_reach_every_parameter(name: str, norm: str) -> None:
    net = init_weights(ganzoo.build("encoder", name, nz=4, nef=8, norm=norm), "xavier")
    mu, logvar = net(torch.randn(2, 3, 64, 64))
    (mu.square().sum() + logvar.exp().sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_gradients_reach_every_timm_parameter() -> None:
    # timm zero-initialises the last norm of each residual block; the model re-initialises anyway.
    net = init_weights(ganzoo.build("encoder", TINY_TIMM, nz=4), "normal")
    mu, logvar = net(torch.randn(2, 3, 32, 32))
    (mu.square().sum() + logvar.exp().sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_resnet_without_norm_leaves_block_inputs_intact() -> None:
    # With norm "none" an in-place activation would overwrite what the shortcut reads.
    net = ganzoo.build("encoder", "resnet_128", nef=4, norm="none")
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    stem_out = net.features[0](x)
    block = net.features[1]
    expected = block.residual(stem_out.clone()) + block.shortcut(stem_out.clone())
    torch.testing.assert_close(block(stem_out), expected)
    mu, logvar = net(x)
    (mu.sum() + logvar.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_timm_backbone_forward() -> None:
    net = ganzoo.build("encoder", TINY_TIMM, input_nc=2, nz=6)
    assert net.pretrained is False
    assert net.size_multiple == 32
    assert (net.input_nc, net.nz, net.vae) == (2, 6, True)
    mu, logvar = net(torch.randn(2, 2, 64, 32))
    assert mu.shape == (2, 6) and logvar.shape == (2, 6)


def test_timm_backbone_builds_on_meta() -> None:
    with torch.device("meta"):
        net = ganzoo.build("encoder", "timm:resnet18")
    assert n_params(net) == 11_176_512 + 2 * (512 * 8 + 8)


def test_unknown_timm_model_suggests_close_names() -> None:
    with pytest.raises(ComponentError, match="timm has no model 'resnet19'") as info:
        ganzoo.build("encoder", "timm:resnet19")
    assert "resnet18" in str(info.value)


@pytest.mark.parametrize(("name", "size"), [("resnet_256", 16), ("conv_256", 63), ("conv", 8), (TINY_TIMM, 16)])
def test_too_small_input_is_a_clear_error(name: str, size: int) -> None:
    net = ganzoo.build("encoder", name, nz=2)
    with pytest.raises(ComponentError, match=rf"at least {net.size_multiple}x{net.size_multiple}.*got {size}x"):
        net(torch.randn(1, 3, size, 64))


def test_wrong_channel_count_is_a_clear_error() -> None:
    net = ganzoo.build("encoder", "conv_128", nef=4)
    with pytest.raises(ComponentError, match="input_nc=3 but got 6 channels"):
        net(torch.randn(1, 6, 32, 32))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"nz": 0}, "nz must be a positive integer"),
    ({"nef": -1}, "nef must be a positive integer"),
    ({"norm": "instnace"}, "unknown norm 'instnace'"),
    ({"nl": "relu6"}, "unknown activation 'relu6'"),
    ({"n_layers": 2}, "has no argument 'n_layers'"),
])
def test_bad_arguments_are_component_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        ganzoo.build("encoder", "resnet_128", **kwargs)


def test_every_registered_encoder_builds_with_its_defaults() -> None:
    for name in ganzoo.list_components("encoder")["encoder"]:
        name = TINY_TIMM if name.startswith("timm:") else name
        with torch.device("meta"):
            net = ganzoo.build("encoder", name)
        assert net.size_multiple >= 1 and net.nz == 8 and net.input_nc == 3
        assert ganzoo.get_component("encoder", name).description
