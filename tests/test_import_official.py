"""Importing official checkpoints: the key mapping, shape errors, and ``ganzoo import-official`` end to end.

The official key names below were read from the official architectures (pix2pix ``UnetGenerator``,
BicycleGAN ``G_Unet_add_input`` / ``G_Unet_add_all`` / ``E_ResNet`` / ``D_NLayersMulti``, CycleGAN
``ResnetGenerator``); the tests build state dicts in that layout and check that the converted
network computes what the source network computes.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import ganzoo
from ganzoo import build
from ganzoo.cli import main
from ganzoo.data.shapes import generate_shapes
from ganzoo.errors import CheckpointError
from ganzoo.official import convert_official_state, official_key_map, to_official
from helpers import BICYCLE, RECIPES

NETWORKS = {
    "pix2pix unet_128": (lambda: build("generator", "unet_128", ngf=4, norm="batch", use_dropout=True),
                         lambda: (torch.randn(2, 3, 128, 128),),
                         ["model.model.0.weight", "model.model.3.bias", "model.model.1.model.1.weight",
                          "model.model.1.model.2.running_var", "model.model.1.model.3.model.1.weight",
                          "model.model.1.model.5.weight"]),
    "bicyclegan unet inject=input": (
        lambda: build("generator", "unet", input_nc=1, nz=8, num_downs=6, ngf=4, norm="instance", inject="input"),
        lambda: (torch.randn(2, 1, 64, 64), torch.randn(2, 8)),
        ["model.model.0.weight", "model.model.1.model.1.weight", "model.model.1.model.3.model.1.weight"]),
    "bicyclegan unet inject=all bilinear": (
        lambda: build("generator", "unet", input_nc=1, nz=8, num_downs=6, ngf=4, norm="instance", inject="all",
                      upsample="bilinear"),
        lambda: (torch.randn(2, 1, 64, 64), torch.randn(2, 8)),
        ["model.down.0.weight", "model.up.3.weight", "model.submodule.down.1.weight",
         "model.submodule.submodule.up.3.bias"]),
    "cyclegan resnet_6blocks": (lambda: build("generator", "resnet_6blocks", ngf=4, norm="instance"),
                                lambda: (torch.randn(2, 3, 32, 32),),
                                ["model.1.weight", "model.10.conv_block.1.weight", "model.10.conv_block.5.weight",
                                 "model.16.weight", "model.23.weight"]),
    "bicyclegan resnet_128 encoder": (lambda: build("encoder", "resnet_128", nef=4, norm="batch", vae=True),
                                      lambda: (torch.randn(2, 3, 64, 64),),
                                      ["conv.0.weight", "conv.1.conv.0.running_mean", "conv.1.conv.2.weight",
                                       "conv.1.conv.5.0.weight", "conv.1.shortcut.1.weight", "fc.0.weight",
                                       "fcVar.0.bias"]),
    "bicyclegan conv_128 encoder": (lambda: build("encoder", "conv_128", nef=4, vae=False),
                                    lambda: (torch.randn(2, 3, 64, 64),),
                                    ["conv.0.weight", "conv.2.weight", "fc.0.weight"]),
    "bicyclegan basic_128_multi": (lambda: build("discriminator", "basic_128_multi", ndf=8, num_D=2),
                                   lambda: (torch.randn(2, 3, 64, 64),),
                                   ["model_0.0.weight", "model_1.0.weight", "model_1.5.bias"]),
    "pix2pix basic D": (lambda: build("discriminator", "basic", input_nc=6, ndf=4, norm="batch"),
                        lambda: (torch.randn(2, 6, 64, 64),),
                        ["model.0.weight", "model.2.weight", "model.3.running_mean", "model.11.weight"]),
}


def _randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
                if key.endswith("running_var"):
                    value.abs_().add_(0.5)
    return net.eval()


def _outputs(net: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    out = net(*inputs)
    if isinstance(out, tuple):
        return [t for t in out if t is not None]
    return list(out) if isinstance(out, list) else [out]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_official_layout_converts_to_the_same_network(name: str) -> None:
    make, inputs, known_keys = NETWORKS[name]
    source = _randomise(make(), seed=1)
    official = to_official(source)
    for key in known_keys:
        assert key in official, (key, sorted(official)[:8])
    # the official file's key order is irrelevant: convert a shuffled copy into a fresh network
    items = list(official.items())
    random.Random(0).shuffle(items)
    target = _randomise(make(), seed=2)
    target.load_state_dict(convert_official_state(target, dict(items)))
    x = inputs()
    for a, b in zip(_outputs(source, x), _outputs(target, x)):
        assert torch.equal(a, b)


def test_mapping_is_one_to_one() -> None:
    for make, _, _ in NETWORKS.values():
        mapping = official_key_map(make())
        assert len(set(mapping.values())) == len(mapping)


def test_mismatched_shape_missing_and_extra_keys_are_named() -> None:
    net = build("generator", "unet", input_nc=1, nz=8, num_downs=6, ngf=4, norm="instance", inject="all")
    official = to_official(net)
    bad = dict(official)
    bad["model.submodule.down.1.weight"] = torch.zeros(3, 3, 4, 4)
    with pytest.raises(CheckpointError, match=r"model\.submodule\.down\.1\.weight.*shape \(3, 3, 4, 4\)"):
        convert_official_state(net, bad)
    missing = dict(official)
    del missing["model.up.1.bias"]
    with pytest.raises(CheckpointError, match=r"no official key 'model\.up\.1\.bias'"):
        convert_official_state(net, missing)
    extra = {**official, "model.submodule.submodule.submodule.submodule.submodule.submodule.down.1.weight":
             torch.zeros(1)}
    with pytest.raises(CheckpointError, match="no place"):
        convert_official_state(net, extra)
    # DataParallel prefixes and stale instance-norm statistics of old official files are accepted
    legacy = {f"module.{k}": v for k, v in official.items()}
    legacy["module.model.submodule.down.2.running_mean"] = torch.zeros(8)
    assert set(convert_official_state(net, legacy)) == set(net.state_dict())


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", "shapes-multimodal", size=64, n_train=2,
                           n_val=2, n_test=0, seed=4)


def test_import_official_cli_writes_a_loadable_checkpoint(shapes: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={shapes}", "data.shapes=null", "train.device=cpu", *BICYCLE]
    recipe = ganzoo.recipe.prepare_recipe(RECIPES / "quickstart_bicyclegan.yaml", overrides)
    model = ganzoo.inference.build_model(recipe)
    G, E = _randomise(model.networks["G"], 3), _randomise(model.networks["E"], 4)
    torch.save(to_official(G), tmp_path / "latest_net_G.pth")
    torch.save(to_official(E), tmp_path / "latest_net_E.pth")
    out = tmp_path / "imported.pt"
    args = ["import-official", str(tmp_path / "latest_net_G.pth"), str(tmp_path / "latest_net_E.pth"),
            "--recipe", str(RECIPES / "quickstart_bicyclegan.yaml"), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "D, D2" in result.output  # discriminators were not given: kept at init, and said so
    payload = torch.load(out, weights_only=True)
    assert payload["resumable"] is False and "optimizers" not in payload
    loaded = ganzoo.load(out, device="cpu")
    # the checkpoint stores the plain recipe, which resolves to the typed one the model carries
    assert isinstance(payload["recipe"], dict) and ganzoo.recipe.resolve_recipe(payload["recipe"]) == loaded.recipe
    A, z = torch.randn(1, 1, 64, 64), torch.randn(2, loaded.nz)
    assert torch.equal(loaded.sample(A, z=z)[0], G(A.repeat(2, 1, 1, 1), z))


def test_import_refuses_pickled_code_and_wrong_networks(shapes: Path, tmp_path: Path) -> None:
    torch.save({"model.model.0.weight": object()}, tmp_path / "latest_net_G.pth")
    torch.save(torch.zeros(1), tmp_path / "latest_net_E.pth")
    args = ["import-official", str(tmp_path / "latest_net_G.pth"), "--recipe",
            str(RECIPES / "quickstart_bicyclegan.yaml"), "--out", str(tmp_path / "x.pt"),
            "--set", f"data.root={shapes}", "--set", "data.shapes=null"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "refused to load" in refused.output and "latest_net_G.pth" in refused.output
    nameless = CliRunner().invoke(main, [*args[:1], str(tmp_path / "latest_net_G_A.pth"), *args[2:]])
    assert nameless.exit_code != 0 and "G_A" in nameless.output
