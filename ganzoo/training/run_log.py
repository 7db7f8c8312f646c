"""What a run shows while it trains: a rich progress bar, TensorBoard scalars and image grids.

TensorBoard gets the losses and learning rates (scalars), sample grids (images), the resolved
recipe (text), and, when the run closes, its hyper-parameters with the final losses as metrics, so
runs of different recipes compare side by side in the HParams tab.
"""
from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console, RenderableType
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Column
from rich.text import Text
from torchvision.utils import make_grid, save_image


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]


def image_grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """One picture per input: each tensor in ``rows`` (N, C, H, W) becomes a column, in [0, 1]."""
    columns = [_to_rgb(r.detach().float().cpu()) for r in rows]
    stacked = torch.stack(columns, 1).flatten(0, 1)  # input-major: one grid row per input
    grid = make_grid(stacked, nrow=len(columns), padding=2, pad_value=1.0, normalize=True, value_range=(-1, 1))
    return grid


def flat_hparams(recipe: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, bool | int | float | str]:
    """The recipe as ``{"model.networks.G.ngf": 64, ...}``: dotted keys, TensorBoard-friendly values.

    Lists become their text (``"[0.5, 0.999]"``), null becomes ``"null"``; ``data.root`` and the
    logging cadence are left out, since they say where and how often, not what was trained.
    """
    if not isinstance(recipe, Mapping) and hasattr(recipe, "to_dict"):  # a resolved Recipe
        recipe = recipe.to_dict()
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


def _clock(seconds: float) -> str:
    """``0:01:02``: the format of rich's elapsed and remaining-time columns."""
    return str(datetime.timedelta(seconds=max(0, int(seconds))))


def _rate_text(rate: float) -> str:
    if rate <= 0:
        return ""
    return f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it"


def _loss_text(losses: dict[str, torch.Tensor]) -> str:
    # G_total is the sum of the terms shown: leave it out.
    return " ".join(f"{k}={float(v):.3f}" for k, v in losses.items() if k != "G_total")


class _TwoRowProgress(Progress):
    """A rich Progress of two rows: the bar with step/total, times and rate, then one line of detail.

    The detail (the losses, or what a start-up phase is doing) never pushes the step count or the ETA
    off the bar's row: it has its own row, cut at the terminal's width.
    """

    detail = ""  # a class default: rich renders once while the Progress is being built

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.detail:
            yield Text(self.detail, style="dim", no_wrap=True, overflow="ellipsis")


def _bar_columns() -> list[ProgressColumn]:
    # The bar takes what the other columns leave (ratio 1 in an expanding grid), so at 80 columns the
    # step count, the times and the rate always show in full: "train ━━━━━━ 120/300 0:00:12 eta 0:01:02 3.10 it/s".
    return [TextColumn("[bold]{task.description}"), BarColumn(bar_width=None, table_column=Column(ratio=1)),
            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[rate]}")]


class _Progress:
    """What the trainer advances once a step: a two-row rich bar, plain log lines, or nothing.

    ``mode`` is ``"bar"`` (a terminal), ``"lines"`` (``--no-progress`` or output to a pipe: one
    plain line per log step, ``step 120/300  gan=1.312 l1=0.210  3.10 it/s  eta 0:01:02``, never
    wrapped) or ``"off"`` (ranks other than 0).
    """

    def __init__(self, mode: str, total: int, start_step: int, console: Console | None = None,
                 progress: _TwoRowProgress | None = None, task: Any = None, every: int = 50) -> None:
        self.mode = mode
        self.total = total
        self.console = console
        self.progress = progress
        self.task = task
        self.every = max(1, int(every))
        self.last_time = time.perf_counter()
        self.last_step = start_step

    def status(self, message: str) -> None:
        """Say what the run is doing before its first step ends (e.g. ``"tuning convolutions…"``).

        Under a bar it is the second row until the first losses replace it; as plain lines, one line.
        """
        if self.mode == "bar" and self.progress is not None:
            self.progress.detail = message
            self.progress.refresh()
        elif self.mode == "lines" and self.console is not None:
            self.console.print(message, soft_wrap=True, markup=False, highlight=False)

    def advance(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        if self.mode == "bar" and self.progress is not None:
            now = time.perf_counter()
            # Reading loss values syncs the device: do it a few times a second, not every step.
            if now - self.last_time < 0.5:
                self.progress.update(self.task, completed=step)
                return
            rate = (step - self.last_step) / (now - self.last_time)
            self.last_time, self.last_step = now, step
            self.progress.detail = _loss_text(losses)
            self.progress.update(self.task, completed=step, rate=_rate_text(rate))
        elif self.mode == "lines" and self.console is not None:
            if step % self.every and step != self.total:
                return
            now = time.perf_counter()
            rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
            self.last_time, self.last_step = now, step
            self.console.print(self.line(step, losses, rate), soft_wrap=True, markup=False, highlight=False)

    def line(self, step: int, losses: dict[str, torch.Tensor], rate: float) -> str:
        """One plain log line: step/total, the losses, the rate and the time left."""
        parts = [f"step {step}/{self.total}", _loss_text(losses), _rate_text(rate)]
        if rate > 0 and step < self.total:
            parts.append(f"eta {_clock((self.total - step) / rate)}")
        return "  ".join(p for p in parts if p)


@contextlib.contextmanager
def training_progress(total: int, start: int, *, console: Console | None = None, bar: bool = True,
                      every: int = 50, description: str = "train") -> Iterator[_Progress]:
    """The progress of a run from step ``start`` to ``total`` on ``console`` (default: stderr).

    ``bar=False`` (``--no-progress``), or a console that is not a terminal, gives plain lines, one
    every ``every`` steps and one at the last step.
    """
    console = console or Console(stderr=True)
    if not bar or not console.is_terminal:
        yield _Progress("lines", total, start, console=console, every=every)
        return
    with _TwoRowProgress(*_bar_columns(), console=console, transient=False, expand=True) as progress:
        task = progress.add_task(description, total=total, completed=start, rate="")
        yield _Progress("bar", total, start, console=console, progress=progress, task=task, every=every)


@contextlib.contextmanager
def status(message: str, console: Console | None = None, *, enabled: bool = True,
           spinner: bool = True) -> Iterator[None]:
    """Show a start-up phase (``"building networks…"``) while the block runs, before the bar starts.

    On a terminal with ``spinner``: a spinner and the message, gone when the block ends. Otherwise
    (``--no-progress``, a pipe): the message once, as a plain line. ``enabled=False`` (ranks other
    than 0) shows nothing.
    """
    if not enabled:
        yield
        return
    console = console or Console(stderr=True)
    if spinner and console.is_terminal:
        with console.status(message):
            yield
        return
    console.print(message, soft_wrap=True, markup=False, highlight=False)
    yield


def _log_every(recipe: Mapping[str, Any] | Any) -> int:
    """The recipe's ``log.every`` (a plain mapping or a resolved Recipe), 50 when it has none."""
    log = recipe.get("log") if isinstance(recipe, Mapping) else getattr(recipe, "log", None)
    every = log.get("every") if isinstance(log, Mapping) else getattr(log, "every", None)
    return int(every or 50)


class RunLog:
    """TensorBoard writer (OUT/logs), sample grids (OUT/samples) and the progress bar of one run."""

    def __init__(self, out_dir: Path, recipe: Mapping[str, Any] | Any, enabled: bool = True,
                 console: Console | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from ganzoo.recipe import dump_recipe

        self.enabled = enabled  # False on ranks other than 0: no files, no output
        self.console = console
        self.out_dir = Path(out_dir)
        self.samples_dir = self.out_dir / "samples"
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.out_dir / "logs")) if enabled else None
        self.recipe = recipe
        self.last_step = 0
        self.last_losses: dict[str, float] = {}
        #: other loggers that get every scalar TensorBoard gets (``log(scalars, step)``, ``finish()``): log.wandb
        self.sinks: list[Any] = []
        if self.writer is not None:
            self.writer.add_text("recipe", "```yaml\n" + dump_recipe(recipe) + "\n```", 0)

    def status(self, message: str, spinner: bool = True) -> contextlib.AbstractContextManager[None]:
        """:func:`status` on this run's console; silent on ranks other than 0."""
        return status(message, self.console, enabled=self.enabled, spinner=spinner)

    @contextlib.contextmanager
    def progress(self, total: int, start: int, enabled: bool = True, every: int | None = None) -> Iterator[_Progress]:
        """The bar of a run, or with ``enabled=False`` (``--no-progress``) plain lines every ``every``
        steps (default: the recipe's ``log.every``); nothing on ranks other than 0."""
        if not self.enabled:
            yield _Progress("off", total, start)
            return
        every = every or _log_every(self.recipe)
        with training_progress(total, start, console=self.console, bar=enabled, every=every) as progress:
            yield progress

    def scalars(self, step: int, losses: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                weights: dict[str, float] | None = None) -> None:
        """Losses, learning rates and the loss weights that change during training (``weights``)."""
        if self.writer is None:
            return
        self.last_step = step
        self.last_losses = {name: float(value) for name, value in losses.items()}
        tags = {f"loss/{name}": value for name, value in self.last_losses.items()}
        tags.update({f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in optimizers.items()})
        tags.update({f"weight/{term}": value for term, value in (weights or {}).items()})
        for tag, value in tags.items():
            self.writer.add_scalar(tag, value, step)
        self.to_sinks(tags, step)

    def to_sinks(self, scalars: Mapping[str, float], step: int) -> None:
        """Send scalars to the other loggers (``log.wandb``); TensorBoard has them already."""
        for sink in self.sinks:
            sink.log(scalars, step)

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
        self.to_sinks(metrics, self.last_step)

    def close(self) -> None:
        """Write the hyper-parameters and close TensorBoard's files.

        Called from the trainer's ``finally``: when an error is already on its way out (a
        CheckpointError on a full disk), a failure here (TensorBoard's own ENOSPC) must not replace
        it, so it is only reported on stderr. Otherwise it is raised as a GanzooError.
        """
        if self.writer is None:
            return
        import sys

        from ganzoo.errors import GanzooError

        in_flight = sys.exc_info()[1]
        writer = self.writer
        try:
            try:
                self.hparams()
            finally:
                self.writer = None
                writer.close()
                sinks, self.sinks = self.sinks, []
                for sink in sinks:
                    sink.finish()
        except Exception as exc:  # noqa: BLE001  (TensorBoard raises OSError, RuntimeError ... on a full disk)
            lines = str(exc).strip().splitlines()
            detail = getattr(exc, "strerror", None) or (lines[0] if lines else type(exc).__name__)
            message = f"could not finish the TensorBoard logs in {self.out_dir / 'logs'}: {detail}"
            if in_flight is not None:
                sys.stderr.write(f"warning: {message}\n")
                return
            raise GanzooError(message + "; the run's checkpoints are complete",
                              hint="free some disk space; the logs written before are readable") from None


# -- labelled sample sheets and the end-of-run report -------------------------------------------------
def _label_font(size: int = 12) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def labelled_sheet(columns: list[torch.Tensor], labels: list[str], *, row_labels: list[str] | None = None,
                   title: str | None = None, min_side: int = 96) -> Any:
    """Images in a labelled table, as a PIL image: column ``i`` holds ``columns[i]`` (N, C, H, W in [-1, 1]),
    one image per row, under the label ``labels[i]``; ``row_labels`` go left of the rows, ``title`` above.

    Small images are enlarged by a whole factor (nearest neighbour) to at least ``min_side`` pixels, so
    a 32 px sample stays sharp and readable.
    """
    from PIL import Image, ImageDraw

    if len(columns) != len(labels):
        raise ValueError(f"{len(columns)} columns but {len(labels)} labels")
    rows = int(columns[0].shape[0])
    height, width = int(columns[0].shape[-2]), int(columns[0].shape[-1])
    scale = max(1, -(-min_side // max(height, width)))
    cell_h, cell_w, pad = height * scale, width * scale, 4
    font = _label_font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_h = 18
    left = 0
    if row_labels is not None:
        left = min(260, int(max(probe.textlength(t, font=font) for t in row_labels)) + 2 * pad) if row_labels else 0
    top = label_h + (label_h if title else 0)
    # A light grey ground, so that images with a white background still read as separate tiles.
    sheet = Image.new("RGB", (left + len(columns) * (cell_w + pad) + pad, top + rows * (cell_h + pad) + pad),
                      (222, 222, 222))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 2), _fit_text(draw, title, font, sheet.width - 2 * pad), fill="black", font=font)
    for c, (images, label) in enumerate(zip(columns, labels)):
        x = left + pad + c * (cell_w + pad)
        text = _fit_text(draw, label, font, cell_w)
        draw.text((x + (cell_w - draw.textlength(text, font=font)) / 2, top - label_h + 2), text, fill="black",
                  font=font)
        pixels = ((_to_rgb(images.detach().float().cpu()).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        for r in range(rows):
            tile = Image.fromarray(pixels[r].permute(1, 2, 0).numpy(), "RGB")
            tile = tile.resize((cell_w, cell_h), Image.NEAREST)
            sheet.paste(tile, (x, top + pad + r * (cell_h + pad)))
    for r, text in enumerate(row_labels or []):
        y = top + pad + r * (cell_h + pad) + cell_h // 2 - 7
        draw.text((pad, y), _fit_text(draw, text, font, left - 2 * pad), fill="black", font=font)
    return sheet


def visual_labels(model: torch.nn.Module, count: int) -> list[str]:
    """Column labels of ``model.visuals``: the model's own ``visual_labels`` when it has them, else
    those of the built-in models (BicycleGAN, pix2pix, CycleGAN), else the column numbers."""
    own = getattr(model, "visual_labels", None)
    if own is not None:
        names = list(own(count) if callable(own) else own)
    elif "G_A" in model.networks:
        names = ["A", "G_A(A)", "G_B(G_A(A))", "B", "G_B(B)", "G_A(G_B(B))"]
    elif int(getattr(model, "nz", 0) or 0) > 0:
        head = ["input", "target"] + (["G(A,E(B))"] if "E" in model.networks else [])
        names = head + [f"G(A,z{k})" for k in range(1, count - len(head) + 1)]
    else:
        names = ["input", "target", "G(A)"]
    names = names[:count]
    return names + [str(i) for i in range(len(names) + 1, count + 1)]


#: The figures the end-of-run report prints for each metric (others: every score it gives).
KEY_FIGURES = {"mode_coverage": ("mode_coverage", "on_palette", "shape_iou"),
               "colour_accuracy": ("colour_accuracy",),
               "palette_transfer": ("palette_transfer", "shape_iou")}
#: The metrics the end-of-run report runs when the recipe names none (train.eval_metrics): the
#: shapes world's own, each of which skips data it does not score.
QUICK_METRICS = ("mode_coverage", "colour_accuracy", "palette_transfer")


def final_report(model: torch.nn.Module, recipe: Any, out_dir: Path, *, console: Console | None = None,
                 num_inputs: int = 100, num_z: int = 20, sheet_rows: int = 6, sheet_z: int = 6,
                 seed: int = 0, step: int | None = None, weight_average: bool | None = None
                 ) -> dict[str, Any] | None:
    """``log.final_eval``: score ``model`` on the val split (the protocol of ``ganzoo eval``'s defaults),
    write ``OUT/final/eval.json`` and the labelled sheet ``OUT/final/samples.png``, and print the key
    figures and both paths. ``step`` and ``weight_average`` are recorded in the scores when given (a
    model being trained does not carry them). Returns the evaluation, or None without a val split."""
    import json

    from ganzoo.errors import DataError, RecipeError
    from ganzoo.evaluation import evaluate, evaluation_dataset, flat_scores
    from ganzoo.inference import model_nz, random_latents

    console = console or Console(stderr=True)
    try:
        dataset = evaluation_dataset(recipe, "val")
    except (DataError, RecipeError) as exc:
        console.print(f"[yellow]log.final_eval: no val split to evaluate on ({exc.message}); skipped[/]",
                      highlight=False, soft_wrap=True)
        return None
    folder = Path(out_dir) / "final"
    folder.mkdir(parents=True, exist_ok=True)
    metrics = list(recipe.train.eval_metrics) if recipe.train.eval_metrics is not None else list(QUICK_METRICS)
    with status("final evaluation…", console):
        result = evaluate(model, dataset=dataset, metrics=metrics, num_inputs=num_inputs, num_z=num_z, seed=seed,
                          strict=False)
    step = int(getattr(model, "step", 0) or 0) if step is None else step
    result["step"] = step
    if weight_average is not None:  # a training model scores its weight average without saying so itself
        result["weight_average"] = weight_average
    (folder / "eval.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    # The sheet: the first val inputs, the same codes in every row.
    was_training = model.training
    model.eval()
    try:
        n = min(sheet_rows, len(dataset))
        items = [dataset[i] for i in range(n)]
        batch = {k: torch.stack([item[k] for item in items]) for k in ("A", "B")}
        nz = model_nz(model)
        z = random_latents(sheet_z, nz, seed=seed) if nz else None
        with torch.no_grad():
            columns = model.visuals(batch, z.to(model.device) if z is not None else None)
    finally:
        model.train(was_training)
    labels = visual_labels(model, len(columns))
    sheet = labelled_sheet(columns, labels, title=f"{recipe.name}: val inputs" + (
        f", the same {sheet_z} codes z in every row" if nz else "") + (f", step {step}" if step else ""))
    sheet_path = folder / "samples.png"
    sheet.save(sheet_path)

    flat = flat_scores(result)
    figures = []
    for name in result["metrics"]:
        for score in KEY_FIGURES.get(name, [k.split(".", 1)[1] for k in flat if k.startswith(f"{name}.")]):
            value = flat.get(f"{name}.{score}")
            if value is not None:
                figures.append(f"{score.replace('_', ' ')} {value:.3g}")
    protocol = f"{result['protocol'].get('num_inputs', num_inputs)} val inputs" + (f" x {num_z} codes" if nz else "")
    if figures:
        console.print(f"[bold]final evaluation[/] ({protocol}): " + ", ".join(figures), highlight=False,
                      soft_wrap=True)
    else:
        console.print("[bold]final evaluation[/]: none of " + ", ".join(metrics) + " applies to this data "
                      "(`ganzoo eval` runs the general metrics)", highlight=False, soft_wrap=True)
    console.print(f"sample sheet: {sheet_path}; scores: {folder / 'eval.json'}", highlight=False, soft_wrap=True)
    return result
