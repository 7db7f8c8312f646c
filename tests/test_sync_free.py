"""A training step that does not log never waits for the device (issue: a sync-free GPU step).

On the CPU every scalar read still goes through ``aten._local_scalar_dense``, the op that on CUDA
stalls the host until the device catches up; counting it per step proves the CUDA step sync-free.
Data loading runs in a worker process, as it does in a real run.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ganzoo.recipe import prepare_recipe
from ganzoo.training.trainer import NonFiniteLoss, Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


class ScalarReads(TorchDispatchMode):
    """Counts the reads of a tensor's value by the host (``.item()``, ``bool(t)``, ``float(t)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def tiny_run(tmp_path: Path, model: str, *extra: str) -> Trainer:
    size = {"pix2pix": 64, "cyclegan": 32, "bicyclegan": 64}[model]
    narrow = {"pix2pix": ["model.networks.G.ngf=8", "model.networks.D.ndf=8"],
              "cyclegan": [f"model.networks.{n}.{w}=8" for n, w in (("G_A", "ngf"), ("G_B", "ngf"), ("D_A", "ndf"),
                                                                   ("D_B", "ndf"))],
              "bicyclegan": ["model.networks.G.ngf=8", "model.networks.D.ndf=8", "model.networks.D2.ndf=8",
                             "model.networks.E.nef=8"]}[model]
    recipe = prepare_recipe(RECIPES / f"quickstart_{model}.yaml", [
        f"data.root={tmp_path / 'data'}", "train.batch_size=2",
        "data.shapes.n_train=8", "data.shapes.n_val=4", "data.shapes.n_test=0",
        f"data.shapes.size={size}", f"data.load_size={size}", f"data.crop_size={size}", "data.workers=1",
        "log.samples_every=1000", "log.checkpoint_every=1000", *narrow, *extra])
    return Trainer(recipe, tmp_path / "run", show_progress=False)


def scalar_reads_per_step(trainer: Trainer) -> list[int]:
    """Scalar reads during each loop iteration (step, checks, schedulers, EMA, logging)."""
    marks: list[int] = []
    counter = ScalarReads()
    step = trainer.parts.step

    def marked(batch):  # type: ignore[no-untyped-def]
        marks.append(counter.count)
        return step(batch)

    trainer.parts.step = marked  # type: ignore[method-assign]
    with counter:
        trainer.run()
    marks.append(counter.count)
    return [b - a for a, b in zip(marks, marks[1:])]


@pytest.mark.parametrize("ema", [0.0, 0.999])
@pytest.mark.parametrize("model", ["pix2pix", "cyclegan", "bicyclegan"])
def test_a_step_that_does_not_log_reads_no_scalar(tmp_path: Path, model: str, ema: float) -> None:
    trainer = tiny_run(tmp_path, model, "train.max_steps=6", "log.every=3", f"train.ema={ema}")
    reads = scalar_reads_per_step(trainer)
    assert len(reads) == 6
    assert [reads[i] for i in (0, 1, 3, 4)] == [0, 0, 0, 0], reads  # steps 1, 2, 4, 5 do not log
    assert reads[2] > 0  # step 3 logs: the losses and the non-finite flag are read there


def test_a_nonfinite_loss_freezes_every_later_update_and_stops_at_the_next_check(tmp_path: Path) -> None:
    """Under nonfinite: stop the check is read when the run logs; from the bad step on, no weight moves."""
    trainer = tiny_run(tmp_path, "pix2pix", "train.max_steps=8", "log.every=4")
    step = trainer.parts.step
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def poisoned(batch):  # type: ignore[no-untyped-def]
        if trainer.step == 1:  # the second step sees a NaN input: NaN losses and gradients
            batch = {**batch, "A": torch.full_like(batch["A"], float("nan"))}
        losses = step(batch)
        snapshots[trainer.step + 1] = {k: v.clone() for k, v in trainer.model.networks.state_dict().items()}
        return losses

    trainer.parts.step = poisoned  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLoss, match=r"became non-finite at step 2 .*stopped at step 4"):
        trainer.run()
    for name, value in snapshots[4].items():
        assert torch.equal(value, snapshots[1][name]) or "running" in name or "num_batches" in name, name
    assert all(torch.isfinite(p).all() for p in trainer.model.networks.parameters())
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()  # nothing written after the bad step
