"""`ganzoo train` end to end for each shipped quickstart recipe, shrunk to 32 px and a few steps."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ganzoo.cli import main
from ganzoo.training.checkpoint import load_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

TINY = {
    "quickstart_bicyclegan": [
        "model.networks.G.num_downs=5", "model.networks.G.ngf=8", "model.networks.E.nef=8",
        "model.networks.D.ndf=8", "model.networks.D2.ndf=8", "train.batch_size=4",
    ],
    "quickstart_pix2pix": ["model.networks.G.num_downs=5", "model.networks.G.ngf=8", "model.networks.D.ndf=8",
                           "train.batch_size=2"],
    "quickstart_cyclegan": ["model.networks.G_A.ngf=8", "model.networks.G_B.ngf=8", "model.networks.D_A.ndf=8",
                            "model.networks.D_B.ndf=8"],
}


# The schedule tests' own learning rate and rule, whatever the quickstart recipes are tuned to.
PLAIN_LINEAR = ["train.optimizer.lr=0.0002", "train.scheduler={type: linear}"]


def tiny_args(name: str, data_root: Path, steps: int = 3) -> list[str]:
    common = [
        f"data.root={data_root}", "data.shapes.size=32", "data.shapes.n_train=8", "data.shapes.n_val=2",
        "data.shapes.n_test=2", "data.load_size=32", "data.crop_size=32", f"train.max_steps={steps}",
        "log.every=1", "log.samples_every=2", "log.checkpoint_every=2", "train.device=cpu",
    ]
    args = []
    for item in common + TINY[name]:
        args += ["--set", item]
    return args


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_writes_samples_logs_and_checkpoints(name: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", str(RECIPES / f"{name}.yaml"), "--out", str(out), "--no-progress",
               *tiny_args(name, tmp_path / "data")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "recipe.yaml").is_file()
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step_00000002.png", "step_00000003.png"]
    assert list((out / "logs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3 and summary["total_steps"] == 3
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["losses"].values())
    ckpt = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 3
    assert ckpt["recipe"]["name"] == name
    assert set(ckpt["networks"]) >= {"G"} or set(ckpt["networks"]) >= {"G_A", "G_B"}
    # The shapes world was generated on first use, with its truth beside it.
    assert (tmp_path / "data" / "train" / "meta.jsonl").is_file() or (tmp_path / "data" / "meta").exists() \
        or any((tmp_path / "data").rglob("meta.jsonl"))


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    """Interrupted at step 2 (as Ctrl-C does), resumed to step 4: bit-identical to a straight run."""
    from ganzoo.recipe import prepare_recipe
    from ganzoo.training.trainer import Trainer, TrainingInterrupted

    name = "quickstart_bicyclegan"
    overrides = tiny_args(name, tmp_path / "data", steps=4)[1::2]
    recipe = prepare_recipe(RECIPES / f"{name}.yaml", overrides)
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    Trainer(recipe, straight, show_progress=False).run()

    interrupted = Trainer(recipe, parted, show_progress=False)
    real_step = interrupted.parts.step

    def step_then_stop(batch):  # what a SIGINT during step 2 does
        losses = real_step(batch)
        if interrupted.step == 1:
            interrupted.request_stop()
        return losses

    interrupted.parts.step = step_then_stop
    with pytest.raises(TrainingInterrupted, match="resume"):
        interrupted.run()
    assert load_checkpoint(parted / "checkpoints" / "latest.pt")["step"] == 2

    result = CliRunner().invoke(main, ["train", "--resume", str(parted), "--no-progress"])
    assert result.exit_code == 0, result.output
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(parted / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 4
    for net, state in a["networks"].items():
        for key, value in state.items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key} differs after resume"
    for opt, state in a["optimizers"].items():
        for pid, slots in state["state"].items():
            for slot, value in slots.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizers"][opt]["state"][pid][slot]))


def test_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    name = "quickstart_pix2pix"
    recipe = str(RECIPES / f"{name}.yaml")
    out = tmp_path / "run"
    args = ["train", recipe, "--out", str(out), "--no-progress", *tiny_args(name, tmp_path / "data", steps=2)]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = (out / "checkpoints" / "latest.pt").read_bytes()
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0
    assert "already holds a run" in again.output and "--resume" in again.output
    assert (out / "checkpoints" / "latest.pt").read_bytes() == before


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", str(RECIPES / "pix2pix_facades.yaml"), "--out", str(tmp_path / "r"),
                                       "--set", f"data.root={tmp_path / 'nowhere'}", "--no-progress"])
    assert result.exit_code == 2
    assert "nowhere" in result.output
    assert "Traceback" not in result.output


def test_bad_scheduler_argument_names_its_recipe_key(tmp_path: Path) -> None:
    name = "quickstart_pix2pix"
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["train", str(RECIPES / f"{name}.yaml"), "--out", str(out), "--no-progress",
                                       *tiny_args(name, tmp_path / "data", steps=2),
                                       "--set", "train.scheduler.end_factor=2"])
    assert result.exit_code == 2
    assert "train.scheduler: scheduler 'linear': end_factor must be a number between 0 and 1, got 2" in result.output
    assert "Traceback" not in result.output
    assert not (out / "checkpoints" / "latest.pt").exists()


def test_linear_decay_follows_epochs_and_epochs_decay(tmp_path: Path) -> None:
    """max_steps keeps the recipe's constant:decay ratio (1:3 here): 2 constant steps, then 6 of decay."""
    from ganzoo.recipe import prepare_recipe
    from ganzoo.training.trainer import Trainer

    name = "quickstart_pix2pix"
    overrides = tiny_args(name, tmp_path / "data", steps=8)[1::2] + ["train.epochs=1", "train.epochs_decay=3",
                                                                     *PLAIN_LINEAR]
    trainer = Trainer(prepare_recipe(RECIPES / f"{name}.yaml", overrides), tmp_path / "run", show_progress=False)
    assert (trainer.total_steps, trainer.decay_steps) == (8, 6)
    opt, sched = trainer.optimizers["G"], trainer.schedulers["G"]
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    base = 2e-4
    assert lrs[:2] == pytest.approx([base] * 2)
    assert lrs[2:] == pytest.approx([base * k / 7 for k in range(6, 0, -1)])
    assert lrs[-1] == pytest.approx(base / 7)


def test_lengthened_resume_follows_the_new_schedule(tmp_path: Path) -> None:
    """Resuming with a larger train.max_steps decays the LR over the new length, not the saved one."""
    from ganzoo.recipe import prepare_recipe
    from ganzoo.training.trainer import Trainer

    name = "quickstart_pix2pix"
    recipe = prepare_recipe(RECIPES / f"{name}.yaml",
                            tiny_args(name, tmp_path / "data", steps=2)[1::2] + PLAIN_LINEAR)
    Trainer(recipe, tmp_path / "run", show_progress=False).run()
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "run"), "--no-progress",
                                       "--set", "train.max_steps=8", "--set", "log.checkpoint_every=1"])
    assert result.exit_code == 0, result.output
    # (checkpoints older than the newest two keep weights only: step 7's still has the optimizers)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000007.pt")
    # 8 steps, the last 4 decaying: the LR for step 8 is 1 - 4/5 of the base (the 2-step schedule
    # it was started with would have gone below zero by now).
    lr = ckpt["optimizers"]["G"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(2e-4 * (1 - 4 / 5))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 8


def test_bad_image_in_a_worker_is_one_clear_error(tmp_path: Path) -> None:
    """With DataLoader workers, a corrupt image still gives the one-screen error naming the file."""
    from ganzoo.data.shapes import generate_shapes

    root = generate_shapes(tmp_path / "s", flavour="shapes-deterministic", size=32, n_train=8, n_val=2, n_test=2)
    (Path(root) / "train" / "00003.png").write_bytes(b"garbage")
    name = "quickstart_pix2pix"
    args = tiny_args(name, tmp_path / "s", steps=8) + ["--set", "data.shapes=null", "--set", "data.workers=2"]
    result = CliRunner().invoke(main, ["train", str(RECIPES / f"{name}.yaml"), "--out", str(tmp_path / "run"),
                                       "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert "00003.png" in result.output
    assert "Traceback" not in result.output and "DataLoader worker" not in result.output


def test_bad_images_can_be_skipped_and_reported(tmp_path: Path) -> None:
    """data.bad_images=skip trains on the readable images and lists the others in the run folder."""
    from ganzoo.data.shapes import generate_shapes

    root = generate_shapes(tmp_path / "s", flavour="shapes-deterministic", size=32, n_train=8, n_val=2, n_test=2)
    bad = Path(root) / "train" / "00003.png"
    bad.write_bytes(b"garbage")
    name = "quickstart_pix2pix"
    args = tiny_args(name, tmp_path / "s", steps=2) + ["--set", "data.shapes=null", "--set", "data.bad_images=skip"]
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(RECIPES / f"{name}.yaml"), "--out", str(out), "--no-progress",
                                       *args])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable image" in result.output
    listed = (out / "skipped_images.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(str(bad))
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == 2


def test_every_step_trains_in_train_mode_after_samples_and_evaluations(tmp_path: Path) -> None:
    """Sample grids and ``train.eval_every`` switch the model to eval mode; the next step must not stay there."""
    from ganzoo.recipe import prepare_recipe
    from ganzoo.training.trainer import Trainer

    name = "quickstart_bicyclegan"
    overrides = tiny_args(name, tmp_path / "data", steps=5)[1::2] + ["log.samples_every=1", "train.eval_every=2"]
    trainer = Trainer(prepare_recipe(RECIPES / f"{name}.yaml", overrides), tmp_path / "run", show_progress=False)
    modes: list[bool] = []
    original_step = trainer.model.train_step

    def recording_step(batch, updater):  # type: ignore[no-untyped-def]
        modes.append(all(module.training for module in trainer.model.modules()))
        return original_step(batch, updater)

    trainer.model.train_step = recording_step  # type: ignore[method-assign]
    trainer.run()
    assert modes == [True] * 5
    assert (tmp_path / "run" / "eval.jsonl").read_text().count("\n") >= 2


def test_data_cache_trains_exactly_as_loading_from_disk(tmp_path: Path) -> None:
    fixed = ["--set", "data.flip=false", "--set", "data.preprocess=none", "--set", "data.workers=0"]
    summaries = []
    for cache in ("false", "true"):
        out = tmp_path / f"cache_{cache}"
        result = CliRunner().invoke(
            main, ["train", str(RECIPES / "quickstart_pix2pix.yaml"), "--out", str(out), "--no-progress",
                   *tiny_args("quickstart_pix2pix", tmp_path / "data"), *fixed, "--set", f"data.cache={cache}"],
            catch_exceptions=False)
        assert result.exit_code == 0, result.output
        summaries.append(json.loads((out / "summary.json").read_text())["losses"])
    assert summaries[0] == summaries[1]


def test_data_cache_with_random_flips_is_a_recipe_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", str(RECIPES / "quickstart_pix2pix.yaml"), "--out", str(out), "--no-progress",
               *tiny_args("quickstart_pix2pix", tmp_path / "data"), "--set", "data.flip=true",
               "--set", "data.cache=true"])
    assert result.exit_code == 2
    assert "data.cache" in result.output and "data.flip is true" in result.output
    assert not (out / "checkpoints").exists()


def test_data_cache_needs_a_dataset_that_takes_it(tmp_path: Path, temp_register) -> None:
    from ganzoo.data.from_recipe import dataset_kwargs
    from ganzoo.errors import DataError
    from ganzoo.recipe import resolve_recipe
    from helpers import pix2pix_recipe

    temp_register("dataset", "no_cache_here", lambda root, split="train", seed=0: None)
    raw = pix2pix_recipe()
    raw["data"] = {"dataset": "no_cache_here", "root": str(tmp_path), "cache": True}
    with pytest.raises(DataError, match="takes no 'cache' argument"):
        dataset_kwargs(resolve_recipe(raw), "train")
    raw["data"]["cache"] = False
    assert dataset_kwargs(resolve_recipe(raw), "train") == {"root": str(tmp_path), "split": "train", "seed": 0}
