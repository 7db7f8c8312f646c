"""CUT and FastCUT resolve to the official defaults, and their parameter counts are the official ones.

The official figures come from taesungp/contrastive-unpaired-translation (``networks.define_G/D/F``
with the default options, counted once by instantiating them; F after its first forward on
features of the default layers 0,4,8,12,16 of ``resnet_9blocks``). The anti-aliasing filters are
buffers in both codes, so a network with and without them has the same count.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

from conftest import RECIPES, ROOT
from ganzoo import build, get_component
from ganzoo.recipe import prepare_recipe, resolve_recipe
from ganzoo_cut import CUT, FastCUT

UNET = "model.networks.G={type: unet, num_downs: 5, input_nc: 3, output_nc: 3, ngf: 8, norm: instance}"
OFFICIAL_PARAMS = {"G": 11_378_179, "D": 2_764_737, "F": 560_384}


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def minimal(model: str) -> dict:
    """A recipe naming only the model and its networks: everything else is a default."""
    return {"model": {"type": model, "networks": {"G": {"type": "resnet_9blocks_antialias"},
                                                  "D": {"type": "basic_antialias"}}},
            "data": {"root": "unused"}}


def test_registered_with_the_plugin_as_source() -> None:
    for name, cls in (("cut", CUT), ("fastcut", FastCUT)):
        entry = get_component("model", name)
        assert entry.factory is cls
    assert get_component("generator", "resnet_9blocks_antialias").factory.base.__name__ == "AntialiasResnetGenerator"


def test_cut_defaults_are_the_official_ones() -> None:
    recipe = resolve_recipe(minimal("cut"))
    model, opt = recipe.model, recipe.model.options
    assert dict(model.losses) == {"gan": 1.0, "nce": 1.0}           # lambda_GAN, lambda_NCE
    assert tuple(opt.nce_layers) == (0, 4, 8, 12, 16)
    assert (opt.num_patches, opt.nce_T, opt.netF, opt.netF_nc) == (256, 0.07, "mlp_sample", 256)
    assert opt.nce_idt is True and opt.flip_equivariance is False
    assert opt.nce_includes_all_negatives_from_minibatch is False
    assert model.gan_loss == "lsgan"
    assert dict(model.init) == {"type": "xavier", "gain": 0.02}
    G, D = model.networks["G"], model.networks["D"]
    assert (G["norm"], G["use_dropout"], G["n_blocks"] if "n_blocks" in G else 9) == ("instance", False, 9)
    assert (D["norm"], D["ndf"]) == ("instance", 64)
    train, data = recipe.train, recipe.data
    assert (train.epochs, train.epochs_decay, train.batch_size) == (200, 200, 1)
    assert train.optimizer["lr"] == 2e-4 and tuple(train.optimizer["betas"]) == (0.5, 0.999)
    assert train.scheduler["type"] == "linear"
    assert (data.dataset, data.load_size, data.crop_size, data.preprocess, data.flip) == \
        ("unaligned", 286, 256, "resize_and_crop", True)
    assert CUT.update_groups(model) == {"D": ["D"], "G": ["G"], "F": ["F"]}  # D first, then G and F


def test_fastcut_preset() -> None:
    recipe = resolve_recipe(minimal("fastcut"))
    opt = recipe.model.options
    assert dict(recipe.model.losses) == {"gan": 1.0, "nce": 10.0}
    assert opt.nce_idt is False and opt.flip_equivariance is True
    assert (recipe.train.epochs, recipe.train.epochs_decay) == (150, 50)
    assert tuple(opt.nce_layers) == (0, 4, 8, 12, 16) and opt.num_patches == 256


@pytest.mark.parametrize("name, model", [("cut_horse2zebra", "cut"), ("fastcut_horse2zebra", "fastcut")])
def test_shipped_recipes_say_what_the_defaults_say(name: str, model: str) -> None:
    shipped = prepare_recipe(RECIPES / f"{name}.yaml")
    defaults = resolve_recipe({**minimal(model), "data": {"root": "datasets/horse2zebra", "workers": 4}})
    assert shipped.model.type == model and shipped.plugins == ("ganzoo_cut",)
    assert shipped.model.options == defaults.model.options
    assert shipped.model.losses == defaults.model.losses and shipped.model.init == defaults.model.init
    for key in ("epochs", "epochs_decay", "batch_size", "optimizer", "scheduler"):
        assert getattr(shipped.train, key) == getattr(defaults.train, key), key
    for key in ("dataset", "load_size", "crop_size", "preprocess", "flip"):
        assert getattr(shipped.data, key) == getattr(defaults.data, key), key


def test_parameter_counts_equal_the_official_ones() -> None:
    torch.manual_seed(0)
    recipe = prepare_recipe(RECIPES / "cut_horse2zebra.yaml", ["train.device=cpu"])
    model = CUT(recipe, "cpu")
    assert "F" not in model.networks  # created from the features, as the official code does
    model.materialize({"A": torch.rand(2, 3, 32, 32) * 2 - 1})  # F's widths depend on channels only
    assert {name: count(net) for name, net in model.networks.items()} == OFFICIAL_PARAMS
    assert model.sampler is not None and model.sampler.channels == [3, 128, 256, 256, 256]
    # ganzoo's own strided ResNet and PatchGAN have the same counts
    assert count(build("generator", "resnet_9blocks", norm="instance")) == OFFICIAL_PARAMS["G"]
    assert count(build("discriminator", "basic", norm="instance")) == OFFICIAL_PARAMS["D"]
    # the filters are not parameters and not in the state dict
    assert all("kernel" not in k for k in model.networks["G"].state_dict())
    # the heads are initialised like the networks: xavier-normal 0.02, zero biases
    head = model.networks["F"].heads[0][0]
    assert head.bias.abs().sum() == 0 and 0 < head.weight.std() < 0.02


def test_recipe_errors_name_their_key(tiny_recipe) -> None:  # type: ignore[no-untyped-def]
    from ganzoo.errors import RecipeError

    with pytest.raises(RecipeError, match="model.nce_layers") as info:
        tiny_recipe("model.nce_layers=[0, 99]")
    assert "outside" in str(info.value)
    with pytest.raises(RecipeError, match="model.nce_layers"):
        tiny_recipe(UNET)
    with pytest.raises(RecipeError, match="model.nce_layers"):
        tiny_recipe(UNET, "model.nce_layers=[down.9]")
    # module names work with any generator
    unet = tiny_recipe(UNET, "model.nce_layers=[down.0, down.2]")
    assert unet.model.options.nce_layers == ("down.0", "down.2")
    with pytest.raises(RecipeError, match="model.losses"):
        tiny_recipe("model.losses={gan: 0, nce: 0}")
    with pytest.raises(RecipeError, match="model.networks.D.input_nc"):
        tiny_recipe("model.networks.D.input_nc=1")


def test_installed_entry_point_lists_the_models() -> None:
    """``pip install plugins/ganzoo-cut``: ``ganzoo list model`` shows cut and fastcut from the plugin."""
    import importlib.metadata
    import subprocess

    try:
        importlib.metadata.distribution("ganzoo-cut")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ganzoo-cut is not pip-installed here")
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="ganzoo.plugins")}
    assert points.get("cut") == "ganzoo_cut"
    listed = subprocess.run([sys.executable, "-m", "ganzoo", "list", "model"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"}, cwd=ROOT, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[2].strip(): line for line in listed.stdout.splitlines() if line.count("│") >= 4}
    assert "ganzoo-cut:cut" in rows["cut"] and "ganzoo-cut:cut" in rows["fastcut"]
