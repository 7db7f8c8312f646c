"""``ganzoo train RECIPE [--set ...] [--out DIR] [--resume RUN_DIR]``."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import click
from rich.console import Console

from ganzoo.cli.app import main
from ganzoo.cli.options import recipe_with_plugins, safe_folder_name, set_option
from ganzoo.errors import GanzooError, RecipeError, RunFolderError
from ganzoo.recipe.schema import Recipe

# Keys that may change when a run is resumed: how long to train, how to log and where, never the maths
# (a run trained on a GPU continues on the CPU or another GPU: train.device).
RESUMABLE_OVERRIDES = ("train.max_steps", "train.epochs", "train.epochs_decay", "log.", "data.workers",
                       "train.device")


def remember_cli_plugins(recipe: Recipe) -> Recipe:
    """The recipe with ``ganzoo --plugin`` plugins added, so --resume and export find them again."""
    from ganzoo.plugins import is_file_spec

    cli_plugins = click.get_current_context().find_root().params.get("plugins") or ()
    listed = list(recipe.plugins)
    for spec in cli_plugins:
        if is_file_spec(spec):
            spec = str(Path(spec).expanduser().resolve())
        if spec not in listed:
            listed.append(spec)
    return recipe.replace(plugins=tuple(listed))


def _resume_plan(resume_dir: Path, recipe: Path | None, overrides: tuple[str, ...], console: Console
                 ) -> tuple[dict, Recipe]:
    """``(stored payload, resolved recipe)`` of the run to resume, its plugins imported (and announced)."""
    from ganzoo.plugins import activate_plugins, recipe_plugin_specs
    from ganzoo.recipe import resolve_recipe
    from ganzoo.recipe.load import apply_override
    from ganzoo.training.checkpoint import CheckpointDir

    # Only the stored recipe is needed here; the trainer reports any checkpoint it has to skip.
    payload, path = CheckpointDir(resume_dir / "checkpoints").load_latest(warn=lambda message: None)
    stored = payload["recipe"]
    if recipe is not None:
        console.print(f"[yellow]note:[/] resuming uses the recipe stored in {resume_dir}; {recipe} is ignored")
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_OVERRIDES):
            raise RecipeError(key, "cannot change when resuming (only the length, logging and train.device can)",
                              hint="start a new run with --out to change the model, data or optimiser")
    # The user's own run folder is trusted: its plugins are imported, and the screen says so.
    stored_yaml = resume_dir / "recipe.yaml"
    source = f"the recipe stored in {path}"
    try:
        import yaml

        listed = recipe_plugin_specs(yaml.safe_load(stored_yaml.read_text(encoding="utf-8")))
        if listed == recipe_plugin_specs(stored):
            source = str(stored_yaml)
    except Exception:  # noqa: BLE001  (recipe.yaml is only the name shown; the checkpoint's recipe is used)
        pass
    activate_plugins(recipe=stored, trust_recipe=True, recipe_source=source,
                     announce=lambda line: console.print(f"[cyan]{line}[/]", highlight=False, soft_wrap=True))
    tree = copy.deepcopy(stored)
    for item in overrides:
        apply_override(tree, item)
    return payload, resolve_recipe(tree, source=str(resume_dir), retired="drop")


def _already_finished(payload: dict, overrides: tuple[str, ...]) -> bool:
    """Whether a resume has nothing to do: the checkpoint's step reached its run's length, or the run
    stopped early (``train.early_stop``), and its length is unchanged."""
    step, total = payload.get("step"), payload.get("total_steps")
    if not isinstance(step, int) or not isinstance(total, int) or (step < total and not payload.get("stopped_early")):
        return False
    length_keys = ("train.max_steps", "train.epochs", "train.epochs_decay")
    return not any(item.split("=", 1)[0].strip() in length_keys for item in overrides)


@main.command("train")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: runs/<recipe name>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the run in this folder from its last complete checkpoint (and import the "
                   "plugins its recipe lists).")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs and CI).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train on N processes of this machine (one per GPU, or CPU workers), as "
                   "`torchrun --nproc-per-node N -m ganzoo train` does; train.batch_size is the global batch.")
def train_command(recipe: Path | None, overrides: tuple[str, ...], out_dir: Path | None, resume_dir: Path | None,
                  no_progress: bool, nproc: int = 1) -> None:
    """Train the model a RECIPE describes (or resume a run with --resume RUN_DIR)."""
    from ganzoo.training.distributed import launch_environment, shutdown_distributed
    from ganzoo.training.run_lock import RunLock, inherited

    console = Console(stderr=True, soft_wrap=True)
    if resume_dir is not None:
        if out_dir is not None and out_dir.resolve() != resume_dir.resolve():
            raise RunFolderError("--out and --resume name different folders; a resumed run stays in its folder")
        out_dir = resume_dir
    elif recipe is None:
        raise click.UsageError("give a RECIPE to train, or --resume RUN_DIR")
    else:
        resolved = remember_cli_plugins(recipe_with_plugins(recipe, overrides))
        from ganzoo.training.wandb_log import require_wandb

        require_wandb(resolved.log.wandb)  # before the run folder exists
        if nproc > 1:  # refused before the run folder is locked (created)
            _check_split(resolved, nproc)
        if out_dir is None:
            folder = safe_folder_name(resolved.name, recipe.stem)
            if folder != resolved.name:
                console.print(f"[yellow]note:[/] the recipe name {resolved.name!r} is not a plain folder "
                              f"name; the run goes to runs/{folder}", highlight=False, soft_wrap=True)
            out_dir = Path("runs") / folder
    # One training process per run folder: taken before a resume reads (or a new run writes) anything.
    rank, world, _ = launch_environment()
    lock = RunLock(out_dir)
    if not inherited(out_dir) and (world <= 1 or rank == 0):
        if resume_dir is not None or out_dir.is_dir():
            lock.acquire()  # (a new folder is locked once the checks below pass, so a typo leaves nothing behind)
    try:
        if resume_dir is None and _holds_a_run(out_dir):
            raise RunFolderError(f"{out_dir} already holds a run (checkpoints found); nothing was changed",
                                 hint=f"continue it with `ganzoo train --resume {out_dir}` or pick another --out")
        if not lock.held and not inherited(out_dir) and (world <= 1 or rank == 0):
            lock.acquire()
        if resume_dir is not None:
            payload, resolved = _resume_plan(resume_dir, recipe, overrides, console)
            if _already_finished(payload, overrides):
                early = (f", stopped early: {payload['stopped_early']}" if payload.get("stopped_early") else "")
                console.print(f"[green]nothing to do[/]: {resume_dir} already finished (step {payload['step']}/"
                              f"{payload['total_steps']}{early}); its checkpoints and summary.json are unchanged",
                              highlight=False, soft_wrap=True)
                return
        if nproc > 1:
            _launch_workers(nproc, resolved, recipe if resume_dir is None else None, overrides, out_dir,
                            resume_dir is not None, no_progress)
            return
        _train(resolved, out_dir, resume_dir is not None, no_progress, console)
    finally:
        lock.release()
        shutdown_distributed()


def _check_split(resolved: Recipe, nproc: int) -> None:
    """The global batch must split evenly over ``nproc`` processes (RecipeError, exit 2)."""
    from ganzoo.registry import get_component
    from ganzoo.training.distributed import batch_multiple, check_batch_size

    model_cls = get_component("model", resolved.model.type).factory
    check_batch_size(resolved.train.batch_size, nproc, batch_multiple(model_cls))


def _holds_a_run(out_dir: Path) -> bool:
    checkpoints = out_dir / "checkpoints"
    try:
        return checkpoints.is_dir() and any(p.name == "latest.pt" or (p.name.startswith("step_") and
                                                                    p.name.endswith(".pt"))
                                            for p in checkpoints.iterdir())
    except OSError:
        return False


def _train(resolved: Recipe, out_dir: Path, resume: bool, no_progress: bool, console: Console) -> None:
    from ganzoo.training.checkpoint import is_write_failure, write_failure_reason
    from ganzoo.training.trainer import NonFiniteLoss, Trainer, TrainingInterrupted

    main_rank = True
    try:
        trainer = Trainer(resolved, out_dir, resume=resume, show_progress=not no_progress, console=console)
        main_rank = trainer.dist.is_main  # under torchrun, rank 0 alone speaks
        if main_rank:
            processes = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
            console.print(f"[bold]ganzoo train[/] {resolved.name}: {trainer.total_steps} steps on "
                          f"{trainer.device}{processes}, {len(trainer.dataset)} training images -> {out_dir}")
            if trainer.updater.warning:
                console.print(f"[yellow]warning:[/] {trainer.updater.warning}", highlight=False)
        try:
            result = trainer.run()
        except (TrainingInterrupted, NonFiniteLoss) as error:
            if not main_rank:  # every rank stops at the same step with the same message: rank 0 says it
                raise SystemExit(error.exit_code) from None
            raise
    except (OSError, RuntimeError) as exc:
        # A write the trainer itself does not guard (a sample grid, TensorBoard, summary.json) failing
        # on a full or read-only disk: one message, not torch's or TensorBoard's traceback.
        if not is_write_failure(exc):
            raise
        reason, hint = write_failure_reason(exc, out_dir)
        raise GanzooError(f"training in {out_dir} stopped: a write failed: {reason}; checkpoints written before "
                          "are intact", hint=f"{hint}, then resume with `ganzoo train --resume {out_dir}`") from None
    if main_rank:
        console.print(f"[green]done[/]: step {result.step}/{result.total_steps} in {result.seconds:.1f}s; "
                      f"samples in {out_dir / 'samples'}, TensorBoard logs in {out_dir / 'logs'}, "
                      f"checkpoints in {out_dir / 'checkpoints'}")


def _launch_workers(nproc: int, resolved: Recipe, recipe: Path | None, overrides: tuple[str, ...], out_dir: Path,
                    resume: bool, no_progress: bool) -> None:
    """``ganzoo train --nproc N``: check what can be checked once, then start N ranks via torchrun's launcher."""
    from ganzoo.registry import get_component
    from ganzoo.training.distributed import batch_multiple, check_batch_size, launch, launch_environment

    if launch_environment()[1] > 1:
        raise GanzooError("--nproc was given to a process that torchrun already started",
                          hint="use either torchrun --nproc-per-node N or ganzoo train --nproc N, not both")
    _check_split(resolved, nproc)
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
    from ganzoo.training.run_lock import INHERITED_ENV, lock_key

    os.environ[INHERITED_ENV] = lock_key(out_dir)  # this process holds the folder's lock for its ranks
    try:
        launch(nproc, child)
    finally:
        os.environ.pop(INHERITED_ENV, None)
