"""``log.final_eval``: a run ends with its own scores on the val split and a labelled sample sheet."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from fault_injection import SHAPES_PAIRED, SHAPES_UNPAIRED, tiny_recipe
from ganzoo.cli import main
from ganzoo.recipe import prepare_recipe, resolve_recipe
from ganzoo.training.run_log import labelled_sheet, visual_labels
from ganzoo.training.trainer import Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("model, flavour, figures", [
    ("bicyclegan", "shapes-multimodal", ("mode coverage", "on palette", "shape iou")),
    ("pix2pix", "shapes-deterministic", ("colour accuracy",)),
    ("cyclegan", "shapes-unpaired", ("palette transfer", "shape iou")),
])
def test_each_model_reports_its_key_figures_and_a_labelled_sheet(tmp_path: Path, model: str, flavour: str,
                                                                 figures: tuple[str, ...]) -> None:
    shapes = dict(SHAPES_UNPAIRED if model == "cyclegan" else SHAPES_PAIRED, flavour=flavour, n_val=3)
    raw = tiny_recipe(model, tmp_path / "data", max_steps=2)
    raw["data"]["shapes"] = shapes
    raw["log"]["final_eval"] = True
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(path), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "final evaluation (3 val inputs" in text
    for figure in figures:
        assert figure in text, figure
    assert f"sample sheet: {run / 'final' / 'samples.png'}" in text
    scores = json.loads((run / "final" / "eval.json").read_text())
    assert scores["step"] == 2 and scores["protocol"]["split"] == "val" and scores["metrics"]
    sheet = Image.open(run / "final" / "samples.png")
    columns = {"bicyclegan": 3 + 6, "pix2pix": 3, "cyclegan": 6}[model]
    assert sheet.width >= columns * 96 and sheet.height >= 3 * 96  # 3 val inputs, 32 px shown at 96 px


def test_the_trainer_returns_the_evaluation_and_off_means_nothing(tmp_path: Path) -> None:
    raw = tiny_recipe("bicyclegan", tmp_path / "data", max_steps=1, ema=0.9)
    raw["log"]["final_eval"] = True
    result = Trainer(resolve_recipe(raw), tmp_path / "on", show_progress=False).run()
    assert result.evaluation is not None and "mode_coverage" in result.evaluation["metrics"]
    assert result.evaluation["weight_average"] is True and result.evaluation["step"] == 1
    assert json.loads((tmp_path / "on" / "final" / "eval.json").read_text()) == result.evaluation
    raw["log"]["final_eval"] = False
    result = Trainer(resolve_recipe(raw), tmp_path / "off", show_progress=False).run()
    assert result.evaluation is None and not (tmp_path / "off" / "final").exists()


def test_the_quickstarts_ask_for_it() -> None:
    for name in ("bicyclegan", "pix2pix", "cyclegan"):
        assert prepare_recipe(RECIPES / f"quickstart_{name}.yaml").log.final_eval is True, name
    assert prepare_recipe(RECIPES / "bicyclegan_shoes.yaml").log.final_eval is False


def test_sheet_labels_follow_the_model() -> None:
    class Nets:
        def __init__(self, names: list[str]) -> None:
            self.networks = dict.fromkeys(names)

    bicycle = Nets(["G", "E", "D", "D2"])
    bicycle.nz = 8  # type: ignore[attr-defined]
    assert visual_labels(bicycle, 6) == ["input", "target", "G(A,E(B))", "G(A,z1)", "G(A,z2)", "G(A,z3)"]
    assert visual_labels(Nets(["G", "D"]), 3) == ["input", "target", "G(A)"]
    assert visual_labels(Nets(["G_A", "G_B", "D_A", "D_B"]), 6)[1] == "G_A(A)"
    sheet = labelled_sheet([torch.zeros(2, 1, 32, 32), torch.ones(2, 3, 32, 32)], ["input", "output"],
                           row_labels=["first", "second"], title="t")
    assert sheet.size[0] > 2 * 96 and sheet.size[1] > 2 * 96
    with pytest.raises(ValueError, match="labels"):
        labelled_sheet([torch.zeros(1, 3, 8, 8)], [])
