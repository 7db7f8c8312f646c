"""Weights & Biases logging (``log.wandb``): the scalars TensorBoard gets, also sent to a wandb run.

wandb is optional and not a dependency (``pip install wandb``, or the ``ganzoo[wandb]`` extra). A
recipe that asks for it on a machine without it fails when the run starts, in one line naming the
package (:func:`require_wandb`), never in the middle of training. The wandb run's id is kept in
``OUT/wandb_run_id`` so that ``ganzoo train --resume`` continues the same wandb run.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ganzoo.errors import GanzooError, RecipeError

#: The pip package that provides ``import wandb``.
PACKAGE = "wandb"
ID_FILE = "wandb_run_id"


def require_wandb(spec: Any) -> Any:
    """The ``wandb`` module when ``log.wandb`` is set (None when it is not); a RecipeError (exit 2) when the
    package is missing."""
    if spec is None:
        return None
    try:
        return importlib.import_module("wandb")
    except ImportError:
        raise RecipeError("log.wandb", f"the {PACKAGE} package is not installed: pip install {PACKAGE} "
                          "(or pip install \"ganzoo[wandb]\"), or set log.wandb: null") from None


def _plain(spec: Any) -> dict[str, Any]:
    return spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)


class WandbLogger:
    """One wandb run for one ganzoo run folder: ``log(scalars, step)`` and ``finish()``.

    Args:
        spec: the resolved ``log.wandb`` (``project``, ``entity``, ``mode``).
        recipe: the resolved recipe (sent as the wandb run's config; its name names the wandb run).
        out_dir: the run folder (wandb's files go to ``OUT/wandb``; the run id to ``OUT/wandb_run_id``).
    """

    def __init__(self, spec: Any, recipe: Any, out_dir: str | Path) -> None:
        wandb = require_wandb(spec)
        options = _plain(spec)
        out_dir = Path(out_dir)
        id_file = out_dir / ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else None
        if not run_id:
            run_id = wandb.util.generate_id() if hasattr(getattr(wandb, "util", None), "generate_id") else None
        (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
        arguments = {"project": options.get("project"), "entity": options.get("entity"), "mode": options.get("mode"),
                     "name": recipe.name, "dir": str(out_dir), "config": recipe.to_dict(), "id": run_id,
                     "resume": "allow"}
        try:
            self.run = wandb.init(**{k: v for k, v in arguments.items() if v is not None})
        except Exception as exc:  # noqa: BLE001  (wandb raises its own errors: no login, no network ...)
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise GanzooError(f"log.wandb: wandb.init failed ({type(exc).__name__}: {lines[0]})",
                              hint="run `wandb login`, or set log.wandb.mode: offline (then `wandb sync`)") from None
        stored = getattr(self.run, "id", None) or run_id
        if stored:
            id_file.write_text(str(stored), encoding="utf-8")

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        if scalars:
            self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

    def finish(self) -> None:
        self.run.finish()


__all__ = ["PACKAGE", "WandbLogger", "require_wandb"]
