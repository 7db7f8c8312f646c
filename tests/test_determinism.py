"""Two runs of one recipe on the CPU give the same weights bit for bit: every shipped quickstart recipe and
every official recipe, shrunk (slim networks, a generated shapes world, a few steps) but otherwise as shipped.

Each pair runs in this process through the Trainer, with the same thread count, and the two final
checkpoints must agree in every tensor: weights, optimizer moments, schedules, RNG states, image pools.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from ganzoo.data.shapes import ensure_shapes
from ganzoo.recipe import prepare_recipe
from ganzoo.training.checkpoint import load_checkpoint
from ganzoo.training.trainer import Trainer
from helpers import RECIPES, assert_identical

STEPS = 3
SHORT = [f"train.max_steps={STEPS}", "train.device=cpu", "data.workers=0", "log.every=1",
         f"log.samples_every={STEPS}", "log.checkpoint_every=2"]

# A world per flavour, shared by all the recipes (and both runs) that read it.
WORLDS = {
    "shapes-deterministic": dict(flavour="shapes-deterministic", size=64, n_train=16, n_val=2, n_test=0, seed=0),
    "shapes-multimodal": dict(flavour="shapes-multimodal", size=64, n_train=16, n_val=2, n_test=0, seed=0),
    "shapes-unpaired": dict(flavour="shapes-unpaired", size=64, n_train=16, n_val=2, n_test=0, seed=0),
}

# recipe -> (world, overrides): slim networks; the official recipes keep their architectures and their
# resize-and-crop preprocessing, on the 64-px world scaled up as their own data would be (the 256-px U-Nets
# and the BicycleGAN encoder and discriminators are made for 256 px).
RECIPE_RUNS: dict[str, tuple[str, list[str]]] = {
    "quickstart_pix2pix": ("shapes-deterministic", ["model.networks.G.ngf=8", "model.networks.D.ndf=8",
                                                    "train.batch_size=4"]),
    "quickstart_cyclegan": ("shapes-unpaired", ["model.networks.G_A.ngf=8", "model.networks.G_B.ngf=8",
                                                "model.networks.D_A.ndf=8", "model.networks.D_B.ndf=8",
                                                "model.pool_size=2", "train.batch_size=2"]),
    "quickstart_bicyclegan": ("shapes-multimodal", ["model.networks.G.ngf=8", "model.networks.E.nef=8",
                                                    "model.networks.D.ndf=8", "model.networks.D2.ndf=8",
                                                    "train.batch_size=4"]),
    "pix2pix_facades": ("shapes-multimodal", ["model.networks.G.ngf=4", "model.networks.D.ndf=4"]),
    "cyclegan_horse2zebra": ("shapes-unpaired", ["model.networks.G_A.ngf=4", "model.networks.G_B.ngf=4",
                                                 "model.networks.D_A.ndf=4", "model.networks.D_B.ndf=4",
                                                 "model.pool_size=2"]),
    "bicyclegan_shoes": ("shapes-multimodal", ["model.networks.G.ngf=4", "model.networks.E.nef=4",
                                               "model.networks.D.ndf=4", "model.networks.D2.ndf=4"]),
    "bicyclegan_facades": ("shapes-multimodal", ["model.networks.G.ngf=4", "model.networks.E.nef=4",
                                                 "model.networks.D.ndf=4", "model.networks.D2.ndf=4"]),
}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("worlds")
    return {name: ensure_shapes(root / name, **spec) for name, spec in WORLDS.items()}


def test_every_shipped_quickstart_and_official_recipe_is_covered() -> None:
    shipped = {p.stem for p in RECIPES.glob("*.yaml")}
    assert {f"quickstart_{m}" for m in ("pix2pix", "cyclegan", "bicyclegan")} <= set(RECIPE_RUNS)
    assert {"pix2pix_facades", "cyclegan_horse2zebra", "bicyclegan_shoes", "bicyclegan_facades"} <= set(RECIPE_RUNS)
    assert set(RECIPE_RUNS) <= shipped


def _final_checkpoint(recipe: Any, out: Path) -> dict[str, Any]:
    trainer = Trainer(recipe, out, show_progress=False, console=Console(file=io.StringIO()))
    result = trainer.run()
    assert result.step == STEPS
    return load_checkpoint(out / "checkpoints" / "latest.pt")


@pytest.mark.parametrize("name", list(RECIPE_RUNS))
def test_two_runs_of_a_shipped_recipe_give_the_same_weights_bit_for_bit(name: str, worlds: dict[str, Path],
                                                                        tmp_path: Path, torch_threads: Any) -> None:
    # One intra-op thread: these tiny convolutions run ~10x faster without a second thread to wait for
    # on a busy machine (two runs with the same thread count are what must agree, with any count).
    torch_threads(1)
    world, overrides = RECIPE_RUNS[name]
    spec = WORLDS[world]
    data = [f"data.root={worlds[world]}", "data.shapes={" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"]
    recipe = prepare_recipe(RECIPES / f"{name}.yaml", [*data, *SHORT, *overrides])
    assert recipe.train.accelerators == ()  # the core alone, as shipped
    first = _final_checkpoint(recipe, tmp_path / "first")
    torch.manual_seed(12345)  # whatever the process did in between plays no part
    second = _final_checkpoint(recipe, tmp_path / "second")
    assert first["step"] == second["step"] == STEPS
    assert first["networks"].keys() == set(recipe.model.networks)
    assert_identical(first, second)
    # and they trained: the last step changed every network
    earlier = load_checkpoint(tmp_path / "first" / "checkpoints" / "step_00000002.pt")["networks"]
    for net, state in first["networks"].items():
        assert any(not torch.equal(v, earlier[net][k]) for k, v in state.items() if v.is_floating_point()), net
