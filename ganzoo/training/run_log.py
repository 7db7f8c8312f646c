"""What a run shows while it trains: a rich progress bar, TensorBoard scalars and image grids.

TensorBoard gets the losses and learning rates (scalars), sample grids (images), the resolved
recipe (text), and, when the run closes, its hyper-parameters with the final losses as metrics, so
runs of different recipes compare side by side in the HParams tab.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torchvision.utils import make_grid, save_image

from ganzoo.recipe import dump_recipe


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]


def image_grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """One picture per input: each tensor in ``rows`` (N, C, H, W) becomes a column, in [0, 1]."""
    columns = [_to_rgb(r.detach().float().cpu()) for r in rows]
    stacked = torch.stack(columns, 1).flatten(0, 1)  # input-major: one grid row per input
    grid = make_grid(stacked, nrow=len(columns), padding=2, pad_value=1.0, normalize=True, value_range=(-1, 1))
    return grid


def flat_hparams(recipe: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """The recipe as ``{"model.networks.G.ngf": 64, ...}``: dotted keys, TensorBoard-friendly values.

    Lists become their text (``"[0.5, 0.999]"``), null becomes ``"null"``; ``data.root`` and the
    logging cadence are left out, since they say where and how often, not what was trained.
    """
    skip = {"data.root", "log", "plugins", "name"}
    flat: dict[str, bool | int | float | str] = {}
    for key, value in recipe.items():
        dotted = f"{prefix}{key}"
        if dotted in skip:
            continue
        if isinstance(value, dict):
            flat.update(flat_hparams(value, dotted + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[dotted] = value
        else:
            flat[dotted] = "null" if value is None else str(value)
    return flat


class _Progress:
    def __init__(self, progress: Progress | None, task: Any, start_step: int) -> None:
        self.progress = progress
        self.task = task
        self.last_time = time.perf_counter()
        self.last_step = start_step

    def advance(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        # Reading loss values syncs the device: do it a few times a second, not every step.
        if now - self.last_time < 0.5:
            self.progress.update(self.task, completed=step)
            return
        rate = (step - self.last_step) / (now - self.last_time)
        self.last_time, self.last_step = now, step
        text = " ".join(f"{k}={float(v):.3f}" for k, v in losses.items() if k != "G_total")
        self.progress.update(self.task, completed=step, losses=f"{rate:.2f} it/s {text}")


class RunLog:
    """TensorBoard writer (OUT/logs), sample grids (OUT/samples) and the progress bar of one run."""

    def __init__(self, out_dir: Path, recipe: dict[str, Any], enabled: bool = True) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.out_dir = Path(out_dir)
        self.samples_dir = self.out_dir / "samples"
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.out_dir / "logs")) if enabled else None
        self.recipe = recipe
        self.last_step = 0
        self.last_losses: dict[str, float] = {}
        if self.writer is not None:
            self.writer.add_text("recipe", "```yaml\n" + dump_recipe(recipe) + "\n```", 0)

    @contextlib.contextmanager
    def progress(self, total: int, start: int, enabled: bool = True) -> Iterator[_Progress]:
        if not enabled:
            yield _Progress(None, None, start)
            return
        columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[losses]}")]
        with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("train", total=total, completed=start, losses="")
            yield _Progress(progress, task, start)

    def scalars(self, step: int, losses: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                weights: dict[str, float] | None = None) -> None:
        """Losses, learning rates and the loss weights that change during training (``weights``)."""
        if self.writer is None:
            return
        self.last_step = step
        self.last_losses = {name: float(value) for name, value in losses.items()}
        for name, value in self.last_losses.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        for name, opt in optimizers.items():
            self.writer.add_scalar(f"lr/{name}", opt.param_groups[0]["lr"], step)
        for term, value in (weights or {}).items():
            self.writer.add_scalar(f"weight/{term}", value, step)

    def sample_grid(self, step: int, rows: list[torch.Tensor]) -> Path:
        grid = image_grid(rows)
        path = self.samples_dir / f"step_{step:08d}.png"
        save_image(grid, path)
        if self.writer is not None:
            self.writer.add_image("samples", grid, step)
        return path

    def hparams(self) -> None:
        """Write the recipe's hyper-parameters with the last logged losses as ``final/<loss>`` metrics."""
        if self.writer is None or not self.last_losses:
            return
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"final/{name}": value for name, value in self.last_losses.items()}
        # The plain-writer form of SummaryWriter.add_hparams, which would open a second run folder.
        experiment, start, end = hparams(flat_hparams(self.recipe), metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary, self.last_step)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, self.last_step)

    def close(self) -> None:
        if self.writer is not None:
            self.hparams()
            self.writer.close()
