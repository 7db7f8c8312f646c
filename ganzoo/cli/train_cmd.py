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


def remember_cli_plugins(recipe: dict) -> None:
    """Store ``ganzoo --plugin`` plugins in the run's recipe so --resume and export find them again."""
    from ganzoo.plugins import is_file_spec

    cli_plugins = click.get_current_context().find_root().params.get("plugins") or ()
    listed = recipe.setdefault("plugins", [])
    for spec in cli_plugins:
        if is_file_spec(spec):
            spec = str(Path(spec).expanduser().resolve())
        if spec not in listed:
            listed.append(spec)


@main.command("train")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: runs/<recipe name>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the run in this folder from its last complete checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs and CI).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train on N processes of this machine (one per GPU, or CPU workers), as "
                   "`torchrun --nproc-per-node N -m ganzoo train` does; train.batch_size is the global batch.")
def train_command(recipe: Path | None, overrides: tuple[str, ...], out_dir: Path | None, resume_dir: Path | None,
                  no_progress: bool, nproc: int = 1) -> None:
    """Train the model a RECIPE describes (or resume a run with --resume RUN_DIR)."""
    from ganzoo.plugins import load_recipe_plugins
    from ganzoo.recipe import prepare_recipe, resolve_recipe
    from ganzoo.recipe.load import apply_override
    from ganzoo.training.checkpoint import CheckpointDir
    from ganzoo.training.distributed import shutdown_distributed
    from ganzoo.training.trainer import NonFiniteLoss, Trainer, TrainingInterrupted

    console = Console(stderr=True)
    if resume_dir is not None:
        if out_dir is not None and out_dir.resolve() != resume_dir.resolve():
            raise GanzooError("--out and --resume name different folders; a resumed run stays in its folder")
        # Only the stored recipe is needed here; the trainer reports any checkpoint it has to skip.
        payload, _ = CheckpointDir(resume_dir / "checkpoints").load_latest(warn=lambda message: None)
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
        remember_cli_plugins(resolved)
        out_dir = out_dir or Path("runs") / str(resolved.get("name") or recipe.stem)
    if nproc > 1:
        _launch_workers(nproc, resolved, recipe if resume_dir is None else None, overrides, out_dir,
                        resume_dir is not None, no_progress)
        return
    try:
        trainer = Trainer(resolved, out_dir, resume=resume_dir is not None, show_progress=not no_progress,
                          console=console)
        main_rank = trainer.dist.is_main  # under torchrun, rank 0 alone speaks
        if main_rank:
            processes = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
            console.print(f"[bold]ganzoo train[/] {resolved.get('name', '')}: {trainer.total_steps} steps on "
                          f"{trainer.device}{processes}, {len(trainer.dataset)} training images -> {out_dir}")
            if trainer.model.precision.warning:
                console.print(f"[yellow]warning:[/] {trainer.model.precision.warning}", highlight=False)
        try:
            result = trainer.run()
        except (TrainingInterrupted, NonFiniteLoss) as error:
            if not main_rank:  # every rank stops at the same step with the same message: rank 0 says it
                raise SystemExit(error.exit_code) from None
            raise
    finally:
        shutdown_distributed()
    if main_rank:
        console.print(f"[green]done[/]: step {result.step}/{result.total_steps} in {result.seconds:.1f}s; "
                      f"samples in {out_dir / 'samples'}, TensorBoard logs in {out_dir / 'logs'}, "
                      f"checkpoints in {out_dir / 'checkpoints'}")


def _launch_workers(nproc: int, resolved: dict, recipe: Path | None, overrides: tuple[str, ...], out_dir: Path,
                    resume: bool, no_progress: bool) -> None:
    """``ganzoo train --nproc N``: check what can be checked once, then start N ranks via torchrun's launcher."""
    from ganzoo.registry import get_component
    from ganzoo.training.distributed import batch_multiple, check_batch_size, launch, launch_environment

    if launch_environment()[1] > 1:
        raise GanzooError("--nproc was given to a process that torchrun already started",
                          hint="use either torchrun --nproc-per-node N or ganzoo train --nproc N, not both")
    model_cls = get_component("model", resolved["model"]["type"]).factory
    check_batch_size(int(resolved["train"]["batch_size"]), nproc, batch_multiple(model_cls))
    root = click.get_current_context().find_root()
    child: list[str] = []
    for plugin in root.params.get("plugins") or ():
        child += ["--plugin", plugin]
    child.append("train")
    if recipe is not None:
        child.append(str(recipe))
    for item in overrides:
        child += ["--set", item]
    child += ["--resume", str(out_dir)] if resume else ["--out", str(out_dir)]
    if no_progress:
        child.append("--no-progress")
    launch(nproc, child)
