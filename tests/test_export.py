"""`ganzoo export`: TorchScript (and ONNX when installed) generators with an explicit inference policy."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ganzoo.cli import main
from ganzoo.export import ExportError, apply_policy, export_generator
from ganzoo.recipe import prepare_recipe
from ganzoo.registry import get_component
from ganzoo.training.checkpoint import CheckpointDir, load_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

TINY = {
    # 6 levels: the official U-Net puts dropout only in levels beyond the 5th, so this one has some.
    "quickstart_pix2pix": ["model.networks.G.num_downs=6", "model.networks.G.use_dropout=true",
                           "model.networks.G.ngf=8", "model.networks.D.ndf=8"],
    "quickstart_bicyclegan": ["model.networks.G.num_downs=5", "model.networks.G.ngf=8", "model.networks.E.nef=8",
                              "model.networks.D.ndf=8", "model.networks.D2.ndf=8"],
    "quickstart_cyclegan": ["model.networks.G_A.ngf=8", "model.networks.G_B.ngf=8", "model.networks.D_A.ndf=8",
                            "model.networks.D_B.ndf=8"],
}


SIZE = {"quickstart_pix2pix": 64}


def make_run(tmp_path: Path, name: str) -> Path:
    """A run folder with a checkpoint of freshly initialised networks (training adds nothing here)."""
    side = SIZE.get(name, 32)
    overrides = [f"data.root={tmp_path / 'data'}", f"data.shapes.size={side}", f"data.load_size={side}",
                 f"data.crop_size={side}",
                 "train.device=cpu", *TINY[name]]
    recipe = prepare_recipe(RECIPES / f"{name}.yaml", overrides)
    model = get_component("model", recipe.model.type).factory(recipe, torch.device("cpu"))
    with torch.no_grad():  # non-trivial running statistics, so eval and batch modes differ
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    run = tmp_path / "run"
    CheckpointDir(run / "checkpoints").save(
        {"step": 7, "recipe": recipe.to_dict(), "networks": {k: v.state_dict() for k, v in model.networks.items()}},
        7)
    return run


def test_pix2pix_torchscript_matches_pytorch_in_eval_policy(tmp_path: Path) -> None:
    run = make_run(tmp_path, "quickstart_pix2pix")
    result = export_generator(run, "torchscript")
    assert result.path == run / "export" / "G.pt" and result.path.is_file()
    assert result.batch_stats == "running" and result.parity_ok
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff < 1e-5
    loaded = torch.jit.load(str(result.path))
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    y1, y2 = loaded(x), loaded(x)
    assert y1.shape == (3, 3, 64, 64) and torch.equal(y1, y2), "eval policy is deterministic"
    assert y1.abs().max() <= 1
    meta = json.loads(result.metadata_path.read_text())
    assert meta["inputs"] == {"x": [None, 1, None, None]} and meta["dropout"] == "eval" and meta["step"] == 7


def test_train_policy_keeps_dropout_and_uses_batch_statistics(tmp_path: Path) -> None:
    run = make_run(tmp_path, "quickstart_pix2pix")
    result = export_generator(run, "torchscript", out=tmp_path / "g_train.pt", dropout="train")
    assert result.batch_stats == "batch" and result.parity_ok, result.parity_note
    loaded = torch.jit.load(str(result.path))
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    torch.manual_seed(0)
    a = loaded(x)
    b = loaded(x)
    assert not torch.equal(a, b), "dropout on: two calls differ"
    eval_result = export_generator(run, "torchscript", out=tmp_path / "g_eval.pt")
    assert not torch.allclose(torch.jit.load(str(eval_result.path))(x), a), "the policies differ"
    # The exported file never updates batch-norm buffers, however often it runs.
    net, _ = apply_policy(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2)), "train", "auto")
    assert net[1].running_mean is None


def test_bicyclegan_exports_z_as_a_second_input(tmp_path: Path) -> None:
    run = make_run(tmp_path, "quickstart_bicyclegan")
    nz = load_checkpoint(run / "checkpoints" / "latest.pt")["recipe"]["model"]["nz"]  # the recipe's model.nz
    result = export_generator(run, "torchscript")
    assert result.nz == nz and result.parity_ok
    loaded = torch.jit.load(str(result.path))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y_a, y_b = loaded(x, torch.randn(2, nz)), loaded(x, torch.randn(2, nz))
    assert y_a.shape == (2, 3, 32, 32) and not torch.allclose(y_a, y_b), "z changes the output"
    assert json.loads(result.metadata_path.read_text())["inputs"]["z"] == [None, nz]


def test_cyclegan_direction_picks_the_generator(tmp_path: Path) -> None:
    run = make_run(tmp_path, "quickstart_cyclegan")
    result = export_generator(run, "torchscript", direction="BtoA")
    assert result.network == "G_B" and result.path.name == "G_B.pt" and result.parity_ok


def test_cli_prints_the_parity_check(tmp_path: Path) -> None:
    run = make_run(tmp_path, "quickstart_pix2pix")
    result = CliRunner().invoke(main, ["export", str(run / "checkpoints" / "latest.pt"), "--out",
                                       str(tmp_path / "g.pt")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "parity ok" in result.output and "max |exported - PyTorch|" in result.output
    missing = CliRunner().invoke(main, ["export", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_onnx_without_the_extra_is_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail as if not installed
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--format", "onnx"])
    assert result.exit_code == 2
    assert "onnx" in result.output and "ganzoo[onnx]" in result.output
    with pytest.raises(ExportError, match="not installed"):
        export_generator(tmp_path, "onnx")


def test_onnx_export_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    run = make_run(tmp_path, "quickstart_bicyclegan")
    result = export_generator(run, "onnx")
    assert result.path.suffix == ".onnx" and result.path.is_file()
    if result.parity_max_abs_diff is not None:
        assert result.parity_ok, result.parity_note
