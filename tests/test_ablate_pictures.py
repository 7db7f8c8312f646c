"""``ganzoo ablate`` draws what the table says: a labelled comparison sheet and a metric plot per cell."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from ganzoo.ablation import cell_groups, cell_name, plan_ablation, run_ablation
from ganzoo.cli import main

VARIANTS = Path(__file__).resolve().parents[1] / "recipes" / "bicyclegan_variants"

TINY = f"""
base: {VARIANTS / 'shapes_common.yaml'}
name: tiny_pictures
model:
  networks:
    G:  {{num_downs: 5, ngf: 8}}
    E:  {{type: conv_128, nef: 8}}
    D:  {{ndf: 8, num_D: 1}}
    D2: {{ndf: 8, num_D: 1}}
data:
  root: data/shapes32
  shapes: {{size: 32, n_train: 8, n_val: 3, n_test: 2}}
train: {{batch_size: 4, max_steps: 1}}
log: {{every: 1, samples_every: 1, checkpoint_every: 1}}
"""


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # data.root is relative to the working directory
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_seeds_of_a_cell_are_one_row_of_the_sheet_and_one_row_of_each_plot(recipe: Path, tmp_path: Path) -> None:
    runs = plan_ablation(recipe, ["model.nz=2,4", "train.seed=0,1"])
    assert [cell_name(r.settings) for r in runs] == ["nz=2", "nz=2", "nz=4", "nz=4"]
    out = tmp_path / "ablation"
    result = run_ablation(runs, out, metrics=["mode_coverage"], eval_options={"num_inputs": 2, "num_z": 2},
                          show_progress=False)
    assert list(cell_groups(result.outcomes)) == ["nz=2", "nz=4"]

    sheet = Image.open(out / "comparison.png")
    # rows: input, target, one per cell (2); columns: 3 val inputs x 4 codes, each cell at least 96 px
    assert sheet.height >= 4 * 96 and sheet.width >= 12 * 96
    plot = Image.open(out / "metrics.png")
    assert plot.width > 400 and plot.height > 100
    table = (out / "results.md").read_text()
    assert "Per cell, over the seeds (train.seed)" in table
    assert "| nz=2 | 2 |" in table and "| nz=4 | 2 |" in table and " ± " in table
    assert "![comparison](comparison.png)" in table and "![metrics](metrics.png)" in table


def test_the_sheet_is_labelled(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The labels reach the picture: labelled_sheet is called with the cell names and column names."""
    import ganzoo.training.run_log as run_log

    seen: dict[str, object] = {}
    real = run_log.labelled_sheet

    def spy(columns, labels, **kw):  # type: ignore[no-untyped-def]
        seen.update(labels=list(labels), rows=list(kw.get("row_labels") or []))
        return real(columns, labels, **kw)

    monkeypatch.setattr(run_log, "labelled_sheet", spy)
    result = CliRunner().invoke(main, ["ablate", str(recipe), "--grid", "model.networks.G.inject=input,all",
                                       "--metrics", "mode_coverage", "--num-inputs", "2", "--num-z", "2",
                                       "--out", str(tmp_path / "abl"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "comparison.png" in result.output and "metrics.png" in result.output
    assert seen["rows"] == ["input", "target", "G.inject=input", "G.inject=all"]
    assert seen["labels"][:2] == ["x1 z1", "x1 z2"] and len(seen["labels"]) == 12
