"""Checkpoints older than the newest two keep weights only: smaller, still loadable, never resumed from."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ganzoo
from fault_injection import SHAPES_PAIRED, tiny_recipe
from ganzoo.data.shapes import ensure_shapes
from ganzoo.recipe import resolve_recipe
from ganzoo.training.checkpoint import FORMAT, VERSION, WHOLE_KEPT, CheckpointDir, load_checkpoint
from ganzoo.training.trainer import Trainer


def whole(step: int) -> dict:
    return {"step": step, "recipe": {"model": {"type": "x"}}, "networks": {"G": {"w": torch.ones(64)}},
            "optimizers": {"G": {"state": {0: {"exp_avg": torch.ones(64), "exp_avg_sq": torch.ones(64)}}}},
            "schedulers": {}, "rng": {"torch": torch.ones(2)}, "ema": {"networks": {"G": {"w": torch.zeros(64)}}}}


def test_older_checkpoints_become_light_the_newest_two_stay_whole(tmp_path: Path) -> None:
    d = CheckpointDir(tmp_path, keep_last=3)
    for step in (1, 2, 3, 4):
        d.save(whole(step), step)
    files = dict(d.step_files())
    assert sorted(files) == [2, 3, 4] and WHOLE_KEPT == 2
    old, previous, newest = (load_checkpoint(files[s]) for s in (2, 3, 4))
    assert old["light"] is True and old["resumable"] is False
    assert "optimizers" not in old and "rng" not in old and "schedulers" not in old
    assert torch.equal(old["networks"]["G"]["w"], torch.ones(64)) and "ema" in old and old["step"] == 2
    assert "optimizers" in previous and "optimizers" in newest
    assert files[2].stat().st_size < files[3].stat().st_size
    assert load_checkpoint(d.latest)["step"] == 4 and "optimizers" in load_checkpoint(d.latest)


def test_a_milestone_is_kept_light(tmp_path: Path) -> None:
    d = CheckpointDir(tmp_path, keep_last=2)
    d.save(whole(1), 1, milestone=True)  # the end of a first session, kept beyond keep_last
    for step in (2, 3, 4):
        d.save(whole(step), step)
    assert [s for s, _ in d.step_files()] == [1, 3, 4]
    assert load_checkpoint(dict(d.step_files())[1])["light"] is True


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "shapes"
    ensure_shapes(root, **SHAPES_PAIRED)
    return root


def test_a_real_run_resumes_from_latest_and_loads_from_a_light_checkpoint(data_root: Path, tmp_path: Path) -> None:
    raw = tiny_recipe("bicyclegan", data_root, max_steps=5, ema=0.9)
    raw["log"].update(checkpoint_every=1, keep_last=3)
    run = tmp_path / "run"
    Trainer(resolve_recipe(raw), run, show_progress=False).run()
    files = dict(CheckpointDir(run / "checkpoints").step_files())
    assert sorted(files) == [2, 3, 4, 5]  # keep_last 3 periodic ones, plus the final one (a milestone)
    assert all(load_checkpoint(files[s]).get("light") for s in (2, 3))
    assert all("optimizers" in load_checkpoint(files[s]) for s in (4, 5))
    model = ganzoo.load(files[3], device="cpu")  # a light checkpoint is a model like any other
    assert model.step == 3 and model.uses_weight_average
    assert model.sample(torch.zeros(1, 1, 32, 32), num_z=2).shape == (1, 2, 3, 32, 32)

    raw["train"]["max_steps"] = 7  # resume: from latest.pt, whole
    resumed = Trainer(resolve_recipe(raw), run, resume=True, show_progress=False)
    result = resumed.run()
    assert result.step == 7
    files = dict(CheckpointDir(run / "checkpoints").step_files())
    assert load_checkpoint(files[5])["light"] and "optimizers" in load_checkpoint(files[7])
