"""``ganzoo train RECIPE [--set ...] [--out DIR] [--resume RUN_DIR]``."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ganzoo.cli.app import main
from ganzoo.cli.options import set_option
from ganzoo.errors import GanzooError

# Keys that may change when a run is resumed: how long to train and how to log, never the maths.
RESUMABLE_OVERRIDES = ("train.max_steps", "train.epochs", "train.epochs_decay", "log.", "data.workers")


@main.command("train")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: runs/<recipe name>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the run in this folder from its last complete checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs and CI).")
def train_command(recipe: Path | None, overrides: tuple[str, ...], out_dir: Path | None, resume_dir: Path | None,
                  no_progress: bool) -> None:
    """Train the model a RECIPE describes (or resume a run with --resume RUN_DIR)."""
    from ganzoo.recipe import prepare_recipe, resolve_recipe
    from ganzoo.recipe.load import apply_override
    from ganzoo.training.checkpoint import CheckpointDir
    from ganzoo.training.trainer import Trainer

    console = Console(stderr=True)
    if resume_dir is not None:
        if out_dir is not None and out_dir.resolve() != resume_dir.resolve():
            raise GanzooError("--out and --resume name different folders; a resumed run stays in its folder")
        payload, _ = CheckpointDir(resume_dir / "checkpoints").load_latest()
        resolved = payload["recipe"]
        if recipe is not None:
            console.print(f"[yellow]note:[/] resuming uses the recipe stored in {resume_dir}; {recipe} is ignored")
        for item in overrides:
            key = item.split("=", 1)[0]
            if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_OVERRIDES):
                raise GanzooError(f"--set {key} cannot change when resuming (only the length and logging can)",
                                  hint="start a new run with --out to change the model, data or optimiser")
        if overrides:
            for item in overrides:
                apply_override(resolved, item)
            resolved = resolve_recipe(resolved, source=str(resume_dir))
        out_dir = resume_dir
    else:
        if recipe is None:
            raise click.UsageError("give a RECIPE to train, or --resume RUN_DIR")
        resolved = prepare_recipe(recipe, list(overrides))
        out_dir = out_dir or Path("runs") / str(resolved.get("name") or recipe.stem)
    trainer = Trainer(resolved, out_dir, resume=resume_dir is not None, show_progress=not no_progress,
                      console=console)
    console.print(f"[bold]ganzoo train[/] {resolved.get('name', '')}: {trainer.total_steps} steps on "
                  f"{trainer.device}, {len(trainer.dataset)} training images -> {out_dir}")
    result = trainer.run()
    console.print(f"[green]done[/]: step {result.step}/{result.total_steps} in {result.seconds:.1f}s; "
                  f"samples in {out_dir / 'samples'}, TensorBoard logs in {out_dir / 'logs'}, "
                  f"checkpoints in {out_dir / 'checkpoints'}")
