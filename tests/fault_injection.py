"""Tiny recipes for the reliability tests, and a driver that runs ``ganzoo train`` with one fault injected.

As a script it runs the real ``ganzoo`` command in this process, after arranging for the process
to SIGKILL itself at one precise moment of checkpointing (nothing in ganzoo knows about it)::

    python tests/fault_injection.py kill-after-checkpoint 6 -- train RECIPE --out RUN
    python tests/fault_injection.py kill-before-rename 6 -- ...   # step_6's temp file written, not renamed
    python tests/fault_injection.py kill-before-latest 6 -- ...   # step_6.pt complete, latest.pt not yet moved

As a module it gives the tests tiny 32-px recipes for the three models (:func:`tiny_recipe`) and
:func:`run_ganzoo`, which runs ``python -m ganzoo`` (or this driver) in a subprocess.
"""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODES = ("kill-after-checkpoint", "kill-before-rename", "kill-before-latest")

SHAPES_PAIRED = {"flavour": "shapes-multimodal", "size": 32, "n_train": 8, "n_val": 2, "n_test": 0, "seed": 0}
SHAPES_UNPAIRED = {"flavour": "shapes-unpaired", "size": 32, "n_train": 8, "n_val": 2, "n_test": 0, "seed": 0}

# Tiny networks: a step takes milliseconds, yet every kind of state a real run has is there
# (batch norm running statistics, dropout noise, image pools, BicycleGAN's random z).
_NETWORKS: dict[str, dict[str, Any]] = {
    "pix2pix": {
        "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "ngf": 4, "norm": "batch",
              "use_dropout": True},
        "D": {"type": "nlayer", "input_nc": 4, "ndf": 4, "n_layers": 2, "norm": "batch"},
    },
    "cyclegan": {
        "G_A": {"type": "resnet", "ngf": 4, "n_blocks": 1, "norm": "instance"},
        "G_B": {"type": "resnet", "ngf": 4, "n_blocks": 1, "norm": "instance"},
        "D_A": {"type": "nlayer", "ndf": 4, "n_layers": 2, "norm": "instance"},
        "D_B": {"type": "nlayer", "ndf": 4, "n_layers": 2, "norm": "instance"},
    },
    "bicyclegan": {
        "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "ngf": 4, "norm": "instance",
              "inject": "all"},
        "E": {"type": "conv", "input_nc": 3, "nef": 4, "n_layers": 2, "vae": True},
        "D": {"type": "nlayer", "input_nc": 3, "ndf": 4, "n_layers": 2, "norm": "instance"},
        "D2": {"type": "nlayer", "input_nc": 3, "ndf": 4, "n_layers": 2, "norm": "instance"},
    },
}


def tiny_recipe(model: str, data_root: Path | str, **train: Any) -> dict[str, Any]:
    """A complete recipe for ``model`` (pix2pix, cyclegan, bicyclegan) on the 32-px shapes world.

    ``train`` overrides ``train.*`` keys (``max_steps`` defaults to 10, checkpoints every 3 steps).
    """
    paired = model != "cyclegan"
    recipe: dict[str, Any] = {
        "name": f"tiny_{model}",
        "model": {"type": model, "networks": copy.deepcopy(_NETWORKS[model])},  # callers edit their copy
        "data": {
            "dataset": "aligned" if paired else "unaligned",
            "root": str(data_root),
            "shapes": SHAPES_PAIRED if paired else SHAPES_UNPAIRED,
            "load_size": 36, "crop_size": 32, "preprocess": "resize_and_crop", "flip": True, "workers": 0,
        },
        "train": {"batch_size": 2, "max_steps": 10, "seed": 7, "device": "cpu",
                  "optimizer": {"type": "adam", "lr": 0.001, "betas": [0.5, 0.999]}, **train},
        "log": {"every": 2, "samples_every": 4, "checkpoint_every": 3, "keep_last": 2},
    }
    if model == "cyclegan":
        recipe["model"]["pool_size"] = 3  # fills after two steps, so later steps swap from the pool
    if model == "bicyclegan":
        recipe["model"]["nz"] = 4
        recipe["model"]["networks"]["G"]["nz"] = 4
        recipe["model"]["networks"]["E"]["nz"] = 4
    return recipe


def write_recipe(recipe: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def subprocess_env() -> dict[str, str]:
    # One thread: the machine is shared, and every run of a comparison uses the same kernels.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", COLUMNS="200")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_ganzoo(*args: str, fault: tuple[str, int] | None = None, cwd: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m ganzoo ARGS`` in a subprocess (through this driver when ``fault`` is given)."""
    if fault is None:
        command = [sys.executable, "-m", "ganzoo", *args]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), fault[0], str(fault[1]), "--", *args]
    return subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault(mode: str, step: int) -> None:
    """Arrange for this process to SIGKILL itself at the moment ``mode`` names, while saving ``step``."""
    from ganzoo.training import checkpoint

    step_name = f"step_{step:08d}.pt"
    real_replace = os.replace
    real_save = checkpoint.CheckpointDir.save
    written = {"step": False}

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        name = Path(dst).name
        if mode == "kill-before-rename" and name == step_name:
            _die()  # the temp file is complete and fsynced, the rename never happens
        if mode == "kill-before-latest" and name == "latest.pt" and written["step"]:
            _die()  # step_N.pt is complete, latest.pt still names the checkpoint before it
        real_replace(src, dst, *args, **kwargs)
        if name == step_name:
            written["step"] = True

    def save(self: Any, payload: dict[str, Any], at_step: int, milestone: bool = False) -> Path:
        path = real_save(self, payload, at_step, milestone)
        if mode == "kill-after-checkpoint" and at_step == step:
            _die()
        return path

    os.replace = replace  # type: ignore[assignment]
    checkpoint.CheckpointDir.save = save  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in MODES or argv[2] != "--":
        raise SystemExit(__doc__)
    install_fault(argv[0], int(argv[1]))
    from ganzoo.cli import main as ganzoo_main

    ganzoo_main(args=argv[3:], prog_name="ganzoo")


if __name__ == "__main__":
    main(sys.argv[1:])
