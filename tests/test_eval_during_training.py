"""Issue #27: an evaluation never kills a run.

A metric that cannot run during training (no weights and no network, a wrong file, a bug) is
recorded as unavailable in eval.jsonl with one warning per run, and training goes on to its last
checkpoint; an unknown metric name stops the run before it starts; a weight file of the wrong kind
is one line naming the file and what was expected.
"""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from fault_injection import SHAPES_PAIRED, tiny_recipe, write_recipe
from ganzoo.cli import main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.metrics.base import Metric, MetricUnavailable
from ganzoo.metrics.diversity import load_lpips
from ganzoo.metrics.realism import FID


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere (an empty torch hub cache, no environment variables) and no network."""
    hub = tmp_path / "empty-hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv("GANZOO_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GANZOO_LPIPS_BACKBONE", raising=False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluation tried to download something")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return hub


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaldata") / "shapes"
    ensure_shapes(root, **SHAPES_PAIRED)
    return root


def _recipe(tmp_path: Path, data: Path, **train: object) -> Path:
    raw = tiny_recipe("bicyclegan", data, **{"max_steps": 4, "eval_every": 2, **train})
    return write_recipe(raw, tmp_path / "recipe.yaml")


def _train(recipe: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["train", str(recipe), "--out", str(out), "--no-progress", *extra])


def _evaluations(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]


def test_fid_without_weights_or_network_trains_to_the_end_with_one_warning(offline: Path, tmp_path: Path,
                                                                           data: Path) -> None:
    recipe = _recipe(tmp_path, data, eval_metrics=["fid", "mode_coverage"])
    result = _train(recipe, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.output.count("metric fid is unavailable during training") == 1  # two evaluations, one warning
    assert "train.eval_weights.inception" in result.output and "--inception-weights" not in result.output
    evaluations = _evaluations(tmp_path / "run")
    assert [e["step"] for e in evaluations] == [2, 4]
    for e in evaluations:
        assert "mode_coverage" in e["metrics"] and "fid" not in e["metrics"]
        assert "weights-inception" in e["unavailable"]["fid"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 4
    assert (tmp_path / "run" / "checkpoints" / "step_00000004.pt").is_file()


def test_a_wrong_weights_file_in_the_recipe_is_one_warning_and_training_goes_on(offline: Path, tmp_path: Path,
                                                                                 data: Path) -> None:
    wrong = tmp_path / "not-inception.pth"
    torch.save(nn.Linear(2, 3).state_dict(), wrong)
    recipe = _recipe(tmp_path, data, eval_metrics=["fid", "kid"], eval_weights={"inception": str(wrong)})
    result = _train(recipe, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.output.count("not-inception.pth is not the InceptionV3 weights") == 2  # fid, kid: once each
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 4


def test_a_metric_that_crashes_does_not_stop_training(tmp_path: Path, data: Path, temp_register) -> None:
    class Broken(Metric):
        def compute(self, ctx):
            raise RuntimeError("CUDA out of memory (simulated)\nsecond line")

    temp_register("metric", "broken_for_test", Broken)
    recipe = _recipe(tmp_path, data, eval_metrics=["broken_for_test"])
    result = _train(recipe, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.output.count("the evaluation at step 2 failed (RuntimeError: CUDA out of memory (simulated))") == 1
    assert "step 4 failed" not in result.output  # said once per run
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 4


def test_an_unknown_metric_name_exits_2_when_the_recipe_is_loaded(tmp_path: Path, data: Path) -> None:
    recipe = _recipe(tmp_path, data, eval_metrics=["mode_coverage", "fdi"])
    result = _train(recipe, tmp_path / "run")
    assert result.exit_code == 2
    assert "train.eval_metrics[1]: 'fdi' is not a registered metric" in result.output
    assert "did you mean 'fid'" in result.output
    assert not (tmp_path / "run").exists()
    info = CliRunner().invoke(main, ["info", str(recipe)])
    assert info.exit_code == 2 and "train.eval_metrics[1]" in info.output


def test_eval_weights_keys_are_checked(tmp_path: Path, data: Path) -> None:
    recipe = _recipe(tmp_path, data, eval_weights={"incepton": "x.pth"})
    result = _train(recipe, tmp_path / "run")
    assert result.exit_code == 2 and "train.eval_weights.incepton" in result.output
    assert "did you mean 'inception'" in result.output


@pytest.mark.parametrize("kind", ["linear", "checkpoint", "text"])
def test_a_weights_file_of_the_wrong_kind_is_one_clear_line(tmp_path: Path, kind: str) -> None:
    wrong = tmp_path / f"{kind}.pth"
    if kind == "linear":
        torch.save(nn.Linear(2, 3).state_dict(), wrong)
    elif kind == "checkpoint":
        torch.save({"format": "ganzoo-checkpoint", "recipe": {}, "networks": {}, "step": 1}, wrong)
    else:
        wrong.write_text("not weights")
    with pytest.raises(MetricUnavailable) as fid:
        FID(inception_weights=str(wrong)).feature_network()
    with pytest.raises(MetricUnavailable) as lpips:
        load_lpips("alex", "0.0", wrong)
    for error, expected in ((fid, "weights-inception-2015-12-05-6726825d.pth"), (lpips, "alexnet-owt-7be5be79.pth")):
        text = str(error.value)
        assert "\n" not in text and len(text) < 300, text
        assert text.startswith(f"{kind}.pth is not the ") and expected in text


def test_ganzoo_eval_with_a_wrong_weights_file_exits_2_with_that_line(tmp_path: Path, data: Path) -> None:
    recipe = _recipe(tmp_path, data, max_steps=1, eval_every=None)
    assert _train(recipe, tmp_path / "run").exit_code == 0
    wrong = tmp_path / "alexnet-owt-7be5be79.pth"  # the right name, another network's tensors
    torch.save(nn.Conv2d(3, 8, 3).state_dict(), wrong)
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "run"), "--metrics", "diversity", "--num-inputs", "1",
                                       "--num-z", "2", "--lpips-weights", str(wrong), "--device", "cpu"])
    assert result.exit_code == 2
    assert "alexnet-owt-7be5be79.pth is not the alex ImageNet weights LPIPS needs" in result.output
    assert "Traceback" not in result.output and "KeyError" not in result.output
