"""Shared fixtures of the ganzoo-cut tests: the plugin importable, a tiny unpaired world, tiny recipes.

Run with ``python -m pytest -q plugins/ganzoo-cut/tests`` from the repository root (ganzoo's own
``python -m pytest -q`` collects ``tests/`` only). Sizes are tiny (32 px, 8 channels) except where
parameter counts are the point.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

PLUGIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PLUGIN))  # the plugin folder, when not pip-installed

import ganzoo_cut  # noqa: E402,F401  (registers cut, fastcut and the anti-aliased networks)
from ganzoo.data.shapes import ensure_shapes  # noqa: E402
from ganzoo.recipe import prepare_recipe  # noqa: E402
from ganzoo.recipe.schema import Recipe  # noqa: E402

ROOT = PLUGIN.parents[1]
RECIPES = ROOT / "recipes"
SIDE = 32
WORLD = dict(flavour="shapes-unpaired", size=SIDE, n_train=6, n_val=2, n_test=0, seed=0)
#: The CUT quickstart at a test size: 32 px, 8 channels, 4 steps.
TINY = ["model.networks.G.ngf=8", "model.networks.D.ndf=8", f"data.load_size={SIDE}", f"data.crop_size={SIDE}",
        "train.device=cpu", "train.max_steps=4", "log.every=1", "log.samples_every=4", "log.checkpoint_every=2",
        "log.keep_last=10"]

torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and steadiest on a shared 2-core machine


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes-unpaired world (6 training images per domain, 2 val)."""
    return ensure_shapes(tmp_path_factory.mktemp("world") / "shapes-unpaired", **WORLD)


def data_overrides(world: Path) -> list[str]:
    spec = ", ".join(f"{k}: {v}" for k, v in WORLD.items())
    return [f"data.root={world}", "data.shapes={" + spec + "}"]


@pytest.fixture
def tiny_recipe(world: Path):  # type: ignore[no-untyped-def]
    """``tiny_recipe(*overrides, model="cut")``: the quickstart recipe at a test size."""

    def make(*overrides: str, model: str = "cut") -> Recipe:
        return prepare_recipe(RECIPES / "quickstart_cut.yaml",
                              [*data_overrides(world), *TINY, f"model.type={model}", *overrides])

    return make
