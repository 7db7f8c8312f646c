"""``ganzoo ablate RECIPE --grid KEY=V1,V2 [--grid ...] [--set ...] [--out DIR] [--metrics ...] [--dry-run]``."""
from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.console import Console

from ganzoo.cli.app import main
from ganzoo.cli.options import safe_folder_name, set_option
from ganzoo.errors import GanzooError


@main.command("ablate")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2,...",
              help="A recipe key and the values to try (each parsed as YAML, e.g. --grid model.nz=2,8,256). "
                   "Repeatable: every combination of all --grid options is trained.")
@set_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Ablation folder: one run folder per combination, results.md and results.csv "
                   "(default: runs/<recipe name>_ablation).")
@click.option("--metrics", "metric_list", default=None,
              help="Comma-separated metric names (default: every metric that applies; 'none': train only).")
@click.option("--split", default="val", show_default=True, help="Split to evaluate on.")
@click.option("--num-inputs", default=100, show_default=True, type=click.IntRange(min=1),
              help="Inputs per evaluation (the first N of the split).")
@click.option("--num-z", default=20, show_default=True, type=click.IntRange(min=1),
              help="Random codes per input in the evaluation (models with a latent code).")
@click.option("--dry-run", is_flag=True, help="List the runs and what re-running would do; train nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs and CI).")
def ablate_command(recipe: Path, grid: tuple[str, ...], overrides: tuple[str, ...], out_dir: Path | None,
                   metric_list: str | None, split: str, num_inputs: int, num_z: int, dry_run: bool,
                   no_progress: bool) -> None:
    """Train every combination of --grid values on top of RECIPE, evaluate each, and compare them in one table.

    Also draws comparison.png (one row per cell: the same val inputs and codes) and metrics.png (each
    metric per cell; with --grid train.seed=0,1,2 the seeds of a cell are one row, with their spread).

    Re-running the same command skips finished runs and resumes unfinished ones.
    """
    from ganzoo.ablation import plan_ablation, run_ablation
    from ganzoo.training.trainer import TrainingInterrupted

    console = Console(stderr=True)
    if not grid:
        raise click.UsageError("give at least one --grid KEY=V1,V2,...")
    from ganzoo.plugins import activate_plugins
    from ganzoo.recipe.load import load_recipe

    # The recipe file the user gave is trusted: its plugins are imported (before the grid names their parts).
    activate_plugins(recipe=load_recipe(recipe), trust_recipe=True, recipe_source=str(recipe),
                     base_dir=recipe.expanduser().parent)
    runs = plan_ablation(recipe, grid, overrides)  # every combination is validated before anything trains
    out = out_dir or Path("runs") / f"{safe_folder_name(runs[0].recipe.name, recipe.stem)}_ablation"
    evaluate = metric_list is None or metric_list.strip().lower() != "none"
    metrics = [m.strip() for m in metric_list.split(",") if m.strip()] if evaluate and metric_list else None
    if metrics is not None:
        from ganzoo.evaluation import metric_names

        unknown = [m for m in metrics if m not in metric_names()]
        if unknown:
            raise GanzooError(f"unknown metric {unknown[0]!r}; registered: {', '.join(metric_names())}")
    console.print(f"[bold]ganzoo ablate[/] {recipe}: {len(runs)} run(s) -> {out}", highlight=False, soft_wrap=True)
    try:
        result = run_ablation(runs, out, metrics=metrics, evaluate=evaluate, dry_run=dry_run,
                              eval_options={"split": split, "num_inputs": num_inputs, "num_z": num_z},
                              show_progress=not no_progress, console=console,
                              title=_command_line(recipe, grid, overrides, out))
    except TrainingInterrupted as error:
        raise TrainingInterrupted(error.message, hint="run the same `ganzoo ablate` command again to resume "
                                  "this run and go on with the grid") from None
    if not dry_run:
        pictures = [str(p) for p in (result.comparison, result.plot) if p.is_file()]
        console.print(f"[green]done[/]: {len(result.outcomes)} run(s); table in {result.markdown} "
                      f"and {result.csv}" + (f"; pictures {' and '.join(pictures)}" if pictures else ""),
                      highlight=False, soft_wrap=True)


def _command_line(recipe: Path, grid: tuple[str, ...], overrides: tuple[str, ...], out: Path) -> str:
    """The command that reproduces the table (the evaluation options are recorded per run in eval.json)."""
    words = ["ganzoo", "ablate", str(recipe)]
    words += [w for g in grid for w in ("--grid", g)] + [w for o in overrides for w in ("--set", o)]
    return " ".join(map(shlex.quote, [*words, "--out", str(out)]))
