"""Issue #29's small frictions: a fast ``--version``, ``stopped:`` for a deliberate stop, a second
Ctrl-C naming the last checkpoint, data workers that fit the machine, export's format advice."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import ganzoo.training.trainer as trainer_module
from fault_injection import SHAPES_PAIRED, subprocess_env, tiny_recipe
from ganzoo.cli import main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.recipe import prepare_recipe, resolve_recipe
from ganzoo.training.trainer import Trainer, TrainingInterrupted, loader_workers

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "shapes"
    ensure_shapes(root, **SHAPES_PAIRED)
    return root


def test_version_does_not_import_torch_and_is_quick() -> None:
    code = ("import sys; sys.argv = ['ganzoo', '--version']\n"
            "from ganzoo.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None)\n"
            "print('torch imported:', 'torch' in sys.modules)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=60)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "ganzoo, version" in done.stdout and "torch imported: False" in done.stdout
    assert seconds < 1.5, seconds  # importing torch alone takes about 2 s on the test machine
    real = subprocess.run([sys.executable, "-m", "ganzoo", "--version"], env=subprocess_env(), capture_output=True,
                          text=True, timeout=60)
    assert real.returncode == 0 and real.stdout.startswith("ganzoo, version")


def test_commands_still_load_on_first_use() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("train", "sample", "eval", "ablate", "data", "export"):
        assert name in result.output
    result = CliRunner().invoke(main, ["list", "metric", "--json"])
    assert result.exit_code == 0 and "mode_coverage" in result.output


def test_a_stop_on_a_signal_is_labelled_stopped_not_error(data_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = Trainer.run

    def stop_first(self: Trainer):  # what one Ctrl-C during the first step does
        self.request_stop(signal.SIGINT)
        return real_run(self)

    monkeypatch.setattr(Trainer, "run", stop_first)
    recipe = tmp_path / "r.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(tiny_recipe("pix2pix", data_root)))
    result = CliRunner().invoke(main, ["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 130, result.output
    assert "stopped: stopped at step 1/10" in result.output and "error:" not in result.output
    assert f"resume with: ganzoo train --resume {tmp_path / 'run'}" in result.output


def test_a_second_ctrl_c_stops_at_once_and_names_the_last_checkpoint(data_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tiny_recipe("pix2pix", data_root, max_steps=6)
    raw["log"]["checkpoint_every"] = 2
    trainer = Trainer(resolve_recipe(raw), tmp_path / "run", show_progress=False)
    real_step = trainer.parts.step
    calls = {"n": 0}

    def step(batch):  # two Ctrl-C during step 4: the first asks for a checkpoint, the second stops now
        calls["n"] += 1
        if calls["n"] == 4:
            trainer._request_stop(signal.SIGINT, None)
            trainer._request_stop(signal.SIGINT, None)
        return real_step(batch)

    monkeypatch.setattr(trainer.parts, "step", step)
    with pytest.raises(KeyboardInterrupt) as info:
        trainer.run()
    message, hint = info.value.args
    assert "second Ctrl-C" in message and "step_00000002.pt (step 2)" in message
    assert hint == f"resume with: ganzoo train --resume {tmp_path / 'run'}"

    # Through the command: one "stopped:" line and its hint, exit 130, no traceback.
    def interrupted(self: Trainer):
        raise KeyboardInterrupt(message, hint)

    monkeypatch.setattr(Trainer, "run", interrupted)
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["train", str(recipe), "--out", str(tmp_path / "run2"), "--no-progress"])
    assert result.exit_code == 130, result.output
    assert "stopped: stopped at once" in result.output and "hint: resume with" in result.output
    assert "Traceback" not in result.output


def test_a_plain_ctrl_c_outside_training_is_still_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import ganzoo.cli.list_cmd as list_cmd

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(list_cmd, "list_components", interrupt)
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 130 and "interrupted (Ctrl-C)" in result.output


def test_data_workers_never_exceed_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert loader_workers(4) == 2 and loader_workers(1) == 1 and loader_workers(0) == 0
    assert loader_workers(None) == 2
    monkeypatch.setattr(trainer_module.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert loader_workers(None) == 4 and loader_workers(8) == 8
    assert prepare_recipe(RECIPES / "quickstart_pix2pix.yaml", ["data.workers=null"]).data.workers is None


def test_an_official_recipe_with_four_workers_trains_quietly_on_two_cpus(data_root: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    raw = tiny_recipe("pix2pix", data_root, max_steps=1)
    raw["data"]["workers"] = 4
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "suggested max number of worker" would be a UserWarning
        trainer = Trainer(resolve_recipe(raw), tmp_path / "run", show_progress=False)
        assert trainer.loader.num_workers == 2
        trainer.run()


def test_export_names_the_recommended_format_and_prints_no_torch_warning(tmp_path: Path) -> None:
    from ganzoo.data.shapes import generate_shapes
    from helpers import BICYCLE, tiny_run

    data = generate_shapes(tmp_path / "shapes", "shapes-multimodal", size=64, n_train=2, n_val=1, n_test=0)
    run = tiny_run(tmp_path, "quickstart_bicyclegan.yaml", data, *BICYCLE, "data.load_size=64",
                   "data.crop_size=64", "data.shapes=null")
    done = subprocess.run([sys.executable, "-W", "always", "-m", "ganzoo", "export", str(run)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    assert "Warning" not in text and "deprecated" in text  # our note says it, torch's warning does not
    assert "Recommended for other runtimes: --format onnx" in " ".join(text.split())
    import warnings

    with warnings.catch_warnings():  # the filter the docs show around torch.jit.load
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        assert torch.jit.load(str(run / "export" / "G.pt")) is not None
