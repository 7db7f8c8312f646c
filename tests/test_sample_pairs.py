"""``ganzoo sample`` and ``load_input_images`` recognise A|B pair files, write a labelled sheet, and put
their output inside the run folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ganzoo
from ganzoo.cli import main
from ganzoo.data.shapes import generate_shapes
from ganzoo.errors import DataError
from ganzoo.inference import load_input_images
from helpers import BICYCLE, tiny_run


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", "shapes-multimodal", size=64, n_train=2,
                           n_val=3, n_test=0, seed=1)


@pytest.fixture(scope="module")
def bicycle_run(tmp_path_factory: pytest.TempPathFactory, shapes: Path) -> Path:
    return tiny_run(tmp_path_factory.mktemp("runs"), "quickstart_bicyclegan.yaml", shapes, *BICYCLE,
                    "data.load_size=64", "data.crop_size=64")


def test_load_input_images_takes_channels_and_pairing_from_the_model(bicycle_run: Path, shapes: Path) -> None:
    model = ganzoo.load(bicycle_run, device="cpu")
    pair = shapes / "val" / "00000.png"
    assert Image.open(pair).size == (128, 64)
    (path, A), = load_input_images([pair], model)  # the module docstring's call
    assert path == pair and A.shape == (1, 64, 64)  # the outline half, one channel as G reads it
    whole = Image.open(pair).convert("L").crop((0, 0, 64, 64))
    expected = torch.from_numpy(np.asarray(whole, dtype=np.float32)) / 127.5 - 1
    assert torch.allclose(A[0], expected, atol=1e-6)
    assert model.sample(A.unsqueeze(0), num_z=2).shape == (1, 2, 3, 64, 64)
    (_, B), = load_input_images([pair], model.recipe, channels=3, pairs=True, direction="BtoA")
    assert B.shape == (3, 64, 64) and not torch.allclose(B.mean(0), A[0])
    (_, squeezed), = load_input_images([pair], model, pairs=False)  # the whole 2:1 image, resized
    assert squeezed.shape == (1, 64, 64) and not torch.equal(squeezed, A)


def test_sample_on_an_aligned_val_folder_splits_the_pairs_without_being_told(bicycle_run: Path, shapes: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import ganzoo.training.run_log as run_log

    seen: dict[str, list[str]] = {}
    real = run_log.labelled_sheet

    def spy(columns, labels, **kw):  # type: ignore[no-untyped-def]
        seen["labels"] = list(labels)
        return real(columns, labels, **kw)

    monkeypatch.setattr(run_log, "labelled_sheet", spy)
    result = CliRunner().invoke(main, ["sample", str(bicycle_run), "--input", str(shapes / "val"), "--num-z", "3"])
    assert result.exit_code == 0, result.output
    made = sorted((bicycle_run / "samples").glob("sample-val-*"))
    assert len(made) == 1, "the default output folder is inside the run"
    out = made[0]
    assert Image.open(out / "00000" / "input.png").size == (64, 64)
    assert Image.open(out / "00000" / "input.png").mode == "L"
    assert seen["labels"] == ["input", "target", "G(A,E(B))", "G(A,z1)", "G(A,z2)", "G(A,z3)"]
    sheet = Image.open(out / "sheet.png")
    assert sheet.width >= 6 * 96 and sheet.height >= 3 * 96  # 3 inputs x 6 labelled columns
    assert "sheet.png" in (out / "index.html").read_text()


def test_explicit_pairs_and_no_pairs(bicycle_run: Path, shapes: Path, tmp_path: Path) -> None:
    paired = CliRunner().invoke(main, ["sample", str(bicycle_run), "--input", str(shapes / "val" / "00001.png"),
                                       "--pairs", "--num-z", "2", "--out", str(tmp_path / "p")])
    assert paired.exit_code == 0, paired.output
    whole = CliRunner().invoke(main, ["sample", str(bicycle_run), "--input", str(shapes / "val" / "00001.png"),
                                      "--no-pairs", "--num-z", "2", "--out", str(tmp_path / "w")])
    assert whole.exit_code == 0, whole.output
    a = Image.open(tmp_path / "p" / "00001" / "input.png").tobytes()
    b = Image.open(tmp_path / "w" / "00001" / "input.png").tobytes()
    assert a != b
    assert Image.open(tmp_path / "p" / "sheet.png").width > Image.open(tmp_path / "w" / "sheet.png").width


def test_a_pair_file_given_to_an_unaligned_model_is_refused_in_one_line(tmp_path: Path) -> None:
    data = generate_shapes(tmp_path / "unpaired", "shapes-unpaired", size=64, n_train=2, n_val=1, n_test=0)
    run = tiny_run(tmp_path, "quickstart_cyclegan.yaml", data, "model.networks.G_A.ngf=4", "model.networks.G_B.ngf=4",
                   "model.networks.D_A.ndf=4", "model.networks.D_B.ndf=4")
    pair = tmp_path / "pair.png"
    Image.new("RGB", (128, 64), "white").save(pair)
    result = CliRunner().invoke(main, ["sample", str(run), "--input", str(pair), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "twice as wide as high" in result.output and "--pairs" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(DataError, match="A\\|B pair"):
        load_input_images([pair], ganzoo.load(run, device="cpu"))
    ok = CliRunner().invoke(main, ["sample", str(run), "--input", str(pair), "--no-pairs", "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert Image.open(tmp_path / "o" / "sheet.png").width > 2 * 96


def test_default_out_for_a_checkpoint_file_is_its_run_folder(bicycle_run: Path, shapes: Path) -> None:
    from ganzoo.cli.sample_cmd import default_out_dir

    checkpoint = bicycle_run / "checkpoints" / "latest.pt"
    out = default_out_dir(checkpoint, shapes / "val")
    assert out.parent == bicycle_run / "samples" and out.name.startswith("sample-val-")
    assert default_out_dir(bicycle_run, Path("../x/")).name.startswith("sample-x-")
