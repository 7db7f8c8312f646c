"""Self-attention (SAGAN) in the U-Net, the ResNet generator and the PatchGANs: the network without
attention at initialisation (gamma = 0), shapes, parameter counts, gradients and bad positions."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

import ganzoo
from fault_injection import tiny_recipe
from ganzoo.errors import ComponentError, RecipeError
from ganzoo.layers.attention import SelfAttention
from ganzoo.recipe import resolve_recipe


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def attention_params(channels: int) -> int:
    inner = max(1, channels // 8)
    return 2 * (channels * inner + inner) + channels * channels + channels + 1  # q, k, v and gamma


def copy_without_attention(source: nn.Module, target: nn.Module) -> None:
    """Load ``source``'s weights into ``target`` (the same network with attention blocks), block by block."""
    inside = {id(m) for block in target.modules() if isinstance(block, SelfAttention) for m in block.modules()}
    theirs = [m for m in source.modules() if not list(m.children()) and m.state_dict()]
    ours = [m for m in target.modules() if not list(m.children()) and m.state_dict() and id(m) not in inside]
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        b.load_state_dict(a.state_dict())


def test_the_block_starts_as_the_identity_and_learns_gamma() -> None:
    block = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert block.gamma.item() == 0.0 and torch.equal(block(x), x)
    assert block.query.out_channels == block.key.out_channels == 2 and block.value.out_channels == 16
    block(x).square().sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs().item() > 0
    with torch.no_grad():
        block.gamma.fill_(1.0)
    assert not torch.allclose(block(x), x)


@pytest.mark.parametrize(("kind", "name", "kwargs", "side"), [
    ("generator", "unet", {"num_downs": 5, "ngf": 8, "attention": [1, 3]}, 32),
    ("generator", "unet", {"num_downs": 5, "ngf": 8, "nz": 4, "inject": "all", "attention": [2]}, 32),
    ("generator", "resnet", {"ngf": 8, "n_blocks": 3, "attention": [0, 2, 3]}, 32),
    ("discriminator", "nlayer", {"ndf": 8, "n_layers": 2, "attention": [0, 2]}, 32),
    ("discriminator", "multiscale", {"ndf": 8, "n_layers": 2, "num_D": 2, "attention": [1]}, 64),
])
def test_at_initialisation_the_output_is_the_network_without_attention(kind: str, name: str, kwargs: dict,
                                                                        side: int) -> None:
    plain_kwargs = {k: v for k, v in kwargs.items() if k != "attention"}
    plain = ganzoo.build(kind, name, **plain_kwargs).eval()
    attended = ganzoo.build(kind, name, **kwargs).eval()
    copy_without_attention(plain, attended)
    blocks = [m for m in attended.modules() if isinstance(m, SelfAttention)]
    assert blocks and all(b.gamma.item() == 0.0 for b in blocks)
    x = torch.randn(2, 3, side, side)
    args = (x, torch.randn(2, kwargs["nz"])) if kwargs.get("nz") else (x,)
    with torch.no_grad():
        a, b = plain(*args), attended(*args)
    for p, q in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        assert p.shape == q.shape
        assert torch.equal(p, q)


@pytest.mark.parametrize(("kind", "name", "kwargs", "channels"), [
    ("generator", "unet_256", {"attention": [2]}, [128]),           # level l: ngf * 2**(l - 1) channels
    ("generator", "unet_256", {"attention": [1, 5]}, [64, 512]),
    ("generator", "resnet_9blocks", {"attention": [4]}, [256]),      # at a quarter of the side: 4 * ngf
    ("discriminator", "basic", {"input_nc": 6, "attention": [0, 2]}, [64, 256]),
    ("discriminator", "basic_256_multi", {"attention": [3], "num_D": 2}, [512, 256]),
])
def test_parameter_counts(kind: str, name: str, kwargs: dict, channels: list[int]) -> None:
    plain_kwargs = {k: v for k, v in kwargs.items() if k != "attention"}
    with torch.device("meta"):
        plain = ganzoo.build(kind, name, **plain_kwargs)
        empty = ganzoo.build(kind, name, **plain_kwargs, attention=[])
        attended = ganzoo.build(kind, name, **kwargs)
    assert n_params(empty) == n_params(plain)
    assert list(empty.state_dict()) == list(plain.state_dict())  # attention: [] changes nothing at all
    assert n_params(attended) == n_params(plain) + sum(attention_params(c) for c in channels)


def test_official_counts_are_unchanged_by_default() -> None:
    with torch.device("meta"):
        assert n_params(ganzoo.build("generator", "unet_256", use_dropout=True)) == 54_413_955
        assert n_params(ganzoo.build("generator", "resnet_9blocks", norm="instance")) == 11_378_179
        assert n_params(ganzoo.build("discriminator", "basic", input_nc=6)) == 2_768_705


@pytest.mark.parametrize(("kind", "name", "kwargs", "message"), [
    ("generator", "unet_128", {"attention": [0]}, "level 0 does not exist; levels are 1..6"),
    ("generator", "unet_128", {"attention": [7]}, "level 7 does not exist"),
    ("generator", "resnet_6blocks", {"attention": [7]}, "block 7 does not exist; blocks are 0..6"),
    ("discriminator", "basic", {"attention": [4]}, "layer 4 does not exist; layers are 0..3"),
    ("discriminator", "basic", {"attention": [1, 1]}, "twice"),
    ("discriminator", "nlayer", {"attention": 2}, "must be a list"),
])
def test_bad_positions_are_component_errors(kind: str, name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        ganzoo.build(kind, name, **kwargs)


def test_a_bad_position_in_a_recipe_names_the_network(tmp_path: Path) -> None:
    recipe = tiny_recipe("pix2pix", tmp_path)
    recipe["model"]["networks"]["G"]["attention"] = [9]
    with pytest.raises(RecipeError, match=r"model\.networks\.G: .*level 9 does not exist"):
        resolve_recipe(recipe)


def test_the_pixel_discriminator_takes_no_attention() -> None:
    with pytest.raises(ComponentError, match="has no argument 'attention'"):
        ganzoo.build("discriminator", "pixel", attention=[0])
