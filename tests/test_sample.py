"""ganzoo.load and ``ganzoo sample`` on tiny untrained checkpoints (no training needed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ganzoo
from ganzoo.cli import main
from ganzoo.data.shapes import generate_shapes
from ganzoo.errors import CheckpointError
from ganzoo.inference import interpolate_latents
from ganzoo.recipe import Recipe
from helpers import BICYCLE, tiny_run

@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", "shapes-multimodal", size=64, n_train=2,
                           n_val=3, n_test=0, seed=1)


@pytest.fixture(scope="module")
def bicycle_run(tmp_path_factory: pytest.TempPathFactory, shapes: Path) -> Path:
    # unit-gain weights: with the recipe's 0.02 an untrained G's outputs for two codes can round to the same bytes
    return tiny_run(tmp_path_factory.mktemp("runs"), "quickstart_bicyclegan.yaml", shapes, *BICYCLE,
                    "model.init.gain=1.0")


def test_load_restores_the_saved_networks_and_samples(bicycle_run: Path) -> None:
    model = ganzoo.load(bicycle_run, device="cpu")
    saved = torch.load(bicycle_run / "checkpoints" / "latest.pt", weights_only=True)["networks"]
    for name, net in model.networks.items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, saved[name][key]), (name, key)
    assert model.step == 3 and not model.training
    A = torch.zeros(2, 1, 64, 64)
    out = model.sample(A, num_z=5)
    assert out.shape == (2, 5, 3, 64, 64)
    z = torch.randn(4, model.nz)
    assert torch.equal(model.sample(A, z=z), model.sample(A, z=z))


def test_load_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        ganzoo.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="latest.pt"):
        ganzoo.load(tmp_path / "empty")


def test_interpolation_runs_end_to_end() -> None:
    z0, z1 = torch.zeros(3), torch.ones(3)
    path = interpolate_latents(z0, z1, 5)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1) and path.shape == (5, 3)


def test_sample_cli_writes_pngs_grids_gif_and_index(bicycle_run: Path, shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sample", str(bicycle_run), "--input", str(shapes / "val"), "--pairs",
                                       "--num-z", "3", "--encode", str(shapes / "val" / "00000.png"),
                                       "--interp", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["00000", "00001", "00002"]
    files = {p.name for p in (out / "00000").iterdir()}
    assert {"input.png", "sample_00.png", "sample_02.png", "encoded.png", "grid.png", "interp.png",
            "interp.gif"} <= files
    side = ganzoo.load(bicycle_run).recipe.data.crop_size  # inputs are brought to the recipe's size
    assert Image.open(out / "00000" / "sample_00.png").size == (side, side)
    assert Image.open(out / "00000" / "input.png").mode == "L"  # the outline half, one channel as G reads it
    index = (out / "index.html").read_text()
    assert "00001/grid.png" in index and "00000/interp.gif" in index


def test_sync_z_uses_the_same_codes_for_every_input(bicycle_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    image = Image.new("L", (64, 64), 255)
    image.save(folder / "a.png")
    image.save(folder / "b.png")
    for flag, same in (("--sync-z", True), (None, False)):
        out = tmp_path / f"out{flag}"
        args = ["sample", str(bicycle_run), "--input", str(folder), "--num-z", "2", "--out", str(out)]
        result = CliRunner().invoke(main, args + ([flag] if flag else []))
        assert result.exit_code == 0, result.output
        a, b = (Image.open(out / name / "sample_00.png").tobytes() for name in ("a", "b"))
        assert (a == b) is same


def test_pix2pix_gives_one_output_and_refuses_z_options(tmp_path: Path) -> None:
    data = generate_shapes(tmp_path / "det", "shapes-deterministic", size=64, n_train=2, n_val=2, n_test=0)
    run = tiny_run(tmp_path, "pix2pix_facades.yaml", data, "model.networks.G.type=unet", "model.networks.G.num_downs=6",
                   "model.networks.G.ngf=8", "model.networks.D.ndf=8", "data.crop_size=64", "data.load_size=64")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sample", str(run), "--input", str(data / "val"), "--pairs", "--num-z", "4",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "00000").glob("sample_*.png")) == ["sample_00.png"]
    refused = CliRunner().invoke(main, ["sample", str(run), "--input", str(data / "val"), "--interp", "3"])
    assert refused.exit_code == 1 and "latent code" in refused.output
    loaded = ganzoo.load(run)
    assert isinstance(loaded.recipe, Recipe) and loaded.recipe.model.type == "pix2pix"
