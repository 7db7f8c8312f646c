"""Feature taps on ganzoo's ResNet generators, and the anti-aliased networks."""
from __future__ import annotations

import pytest
import torch

from ganzoo import build
from ganzoo.errors import ComponentError
from ganzoo_cut import BlurDownsample, BlurUpsample, FeatureTaps, resolve_layers


def prefix(G: torch.nn.Module, x: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
    """The outputs of G.model[i] for each i, by running the Sequential by hand."""
    out = []
    for i, layer in enumerate(G.model):
        x = layer(x)
        if i in indices:
            out.append(x)
        if i == max(indices):
            return out
    raise AssertionError


def test_official_indices_on_ganzoo_resnet_are_the_same_roles() -> None:
    torch.manual_seed(0)
    G = build("generator", "resnet_9blocks", ngf=8, norm="instance")
    assert [name for name, _ in resolve_layers(G, [0, 4, 8, 12, 16])] == \
        ["model.0", "model.4", "model.7", "model.10", "model.14"]  # pad, both strided convs, blocks 1 and 5
    assert [type(m).__name__ for _, m in resolve_layers(G, [0, 4, 8, 12, 16])] == \
        ["ReflectionPad2d", "Conv2d", "Conv2d", "ResnetBlock", "ResnetBlock"]
    x = torch.randn(2, 3, 32, 32)
    feats = FeatureTaps(G, [0, 4, 8, 12, 16])(G, x)
    for got, want in zip(feats, prefix(G, x, [0, 4, 7, 10, 14])):
        assert torch.equal(got, want)
    assert [tuple(f.shape) for f in feats] == [(2, 3, 38, 38), (2, 16, 16, 16), (2, 32, 8, 8), (2, 32, 8, 8),
                                                (2, 32, 8, 8)]
    # a blur of the official network maps to the ReLU that holds the down-sampled features
    assert [name for name, _ in resolve_layers(G, [7, 11])] == ["model.6", "model.9"]
    with pytest.raises(ComponentError, match="no counterpart"):
        resolve_layers(G, [21])  # the official first up-sampling blur
    with pytest.raises(ComponentError, match="twice"):
        resolve_layers(G, [4, 4])


def test_official_indices_on_the_antialiased_resnet_are_literal() -> None:
    G = build("generator", "resnet_9blocks_antialias", ngf=8)
    names = [name for name, _ in resolve_layers(G, [0, 4, 8, 12, 16])]
    assert names == ["model.0", "model.4", "model.8", "model.12", "model.16"]
    x = torch.randn(1, 3, 32, 32)
    for got, want in zip(FeatureTaps(G, [0, 4, 8, 12, 16])(G, x), prefix(G, x, [0, 4, 8, 12, 16])):
        assert torch.equal(got, want)


def test_stopping_after_the_last_tap_changes_no_feature_and_no_gradient() -> None:
    torch.manual_seed(0)
    G = build("generator", "resnet_6blocks", ngf=8, norm="instance")
    x = torch.randn(2, 3, 32, 32)
    early = FeatureTaps(G, [0, 4, 8, 12, 16])
    full = FeatureTaps(G, [0, 4, 8, 12, 16])
    full.stop_after = None
    grads = []
    for taps in (early, full):
        G.zero_grad(set_to_none=True)
        sum(f.square().mean() for f in taps(G, x)).backward()
        grads.append({n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None})
    assert early.stop_after == "model.14"
    enc = [n for n in grads[1]]
    assert enc and all(torch.equal(grads[0][n], grads[1][n]) for n in enc)
    assert all(grads[0][n].abs().sum() == 0 for n in grads[0] if n not in grads[1])  # the decoder: zeros
    assert all(not h for h in (m._forward_hooks for m in G.modules()))  # hooks removed


def test_module_names_tap_any_generator() -> None:
    G = build("generator", "unet", num_downs=5, ngf=8, norm="instance")
    taps = FeatureTaps(G, ["down.0", "down.2"])
    assert taps.stop_after is None  # no early stop outside the ResNet generators' Sequential
    feats = taps(G, torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [8, 32]


def test_blur_filters_by_hand() -> None:
    down = BlurDownsample(1)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # output (0, 0): reflect padding makes the 3x3 window rows [5,4,5... ] -> by hand:
    # rows -1, 0, 1 of column window -1, 0, 1 (reflected: index -1 -> 1)
    window = torch.tensor([[5.0, 4.0, 5.0], [1.0, 0.0, 1.0], [5.0, 4.0, 5.0]])
    weights = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    y = down(x)
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 0, 0].item() == pytest.approx((window * weights).sum().item())
    assert torch.allclose(down(torch.full((1, 1, 6, 6), 3.0)), torch.full((1, 1, 3, 3), 3.0))
    up = BlurUpsample(2)
    z = torch.randn(1, 2, 3, 5)
    assert up(z).shape == (1, 2, 6, 10)
    assert torch.allclose(up(torch.full((1, 2, 3, 3), 2.0)), torch.full((1, 2, 6, 6), 2.0))
    # each output pixel mixes the nearest input pixel 3:1 with its neighbour (interior, one axis)
    ramp = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()
    assert BlurUpsample(1)(ramp)[0, 0, 3, 2:6].tolist() == pytest.approx([0.75, 1.25, 1.75, 2.25])


def test_antialiased_networks_have_the_plain_ones_parameters_and_shapes() -> None:
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    for aa, plain in (("resnet_6blocks_antialias", "resnet_6blocks"), ("basic_antialias", "basic")):
        kind = "generator" if "resnet" in aa else "discriminator"
        with torch.device("meta"):  # full width: counts only
            assert count(build(kind, aa, norm="instance")) == count(build(kind, plain, norm="instance"))
        width = {"ngf": 8} if kind == "generator" else {"ndf": 8}
        a, b = build(kind, aa, norm="instance", **width), build(kind, plain, norm="instance", **width)
        x = torch.randn(1, 3, 32, 32)
        assert a(x).shape == b(x).shape
    with torch.device("meta"):
        G = build("generator", "resnet_9blocks_antialias")
    assert all(p.is_meta for p in G.parameters())
    plain_again = build("generator", "resnet_antialias", n_blocks=2, ngf=8, antialias=False, antialias_up=False)
    twin = build("generator", "resnet", n_blocks=2, ngf=8, norm="instance")
    assert [type(m) for m in plain_again.model] == [type(m) for m in twin.model]


def test_roles_step_over_layers_the_official_network_lacks() -> None:
    import inspect

    from ganzoo.generators.resnet import ResnetGenerator

    if "attention" not in inspect.signature(ResnetGenerator).parameters:
        pytest.skip("this ganzoo's ResNet generator has no self-attention blocks")
    G = build("generator", "resnet_6blocks", ngf=8, norm="instance", attention=[0, 3])
    names = [name for name, _ in resolve_layers(G, [0, 4, 8, 12, 16])]
    blocks = [i for i, m in enumerate(G.model) if type(m).__name__ == "ResnetBlock"]
    assert names == ["model.0", "model.4", "model.7", f"model.{blocks[0]}", f"model.{blocks[4]}"]
