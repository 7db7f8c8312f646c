"""The Trainer: a resolved recipe in, a run folder out (samples, logs, checkpoints), resumable.

Run folder layout::

    OUT/recipe.yaml          the fully resolved recipe
    OUT/checkpoints/         step_N.pt (last K kept) and latest.pt
    OUT/samples/             image grids, step_N.png
    OUT/logs/                TensorBoard event files (scalars, image grids, the recipe as text)
    OUT/summary.json         final step, losses and timing
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from ganzoo.data.collate import collate_items
from ganzoo.data.from_recipe import epoch_reaches_persistent_workers, make_dataset
from ganzoo.data.screening import drop_unreadable_images
from ganzoo.errors import CheckpointError, ComponentError, DataError, GanzooError, RecipeError, RunFolderError
from ganzoo.recipe.resolve import build_meta_networks
from ganzoo.recipe.schema import Recipe
from ganzoo.registry import build, get_component
from ganzoo.schedulers import with_warmup
from ganzoo.training.accelerators import (accelerator_states, build_accelerators, load_accelerator_states,
                                          prepare_all, prepare_updaters)
from ganzoo.training.checkpoint import CheckpointDir, estimate_checkpoint_bytes, load_network_state
from ganzoo.training.device import configure_kernels, device_name, kernel_flags, stored_device
from ganzoo.training.distributed import (batch_multiple, check_batch_size, launch_environment, setup_distributed,
                                         wrap_networks)
from ganzoo.training.guards import check_memory, nonfinite_buffers
from ganzoo.training.monitor import BestKeeper, EarlyStopping, score_of
from ganzoo.training.run_lock import RunLock, held_here, inherited
from ganzoo.training.ema import GeneratorEMA
from ganzoo.training.optim import make_optimizers
from ganzoo.training.rng import rng_state, seed_everything, set_rng_state
from ganzoo.training.run_log import RunLog, status
from ganzoo.training.sampler import ResumableBatchSampler
from ganzoo.training.updates import Updater
from ganzoo.training.wandb_log import WandbLogger, require_wandb


class TrainingInterrupted(GanzooError):
    """Training stopped on a signal after writing a checkpoint."""

    exit_code = 130
    label = "stopped"  # asked for, not an error: the CLI prints "stopped:"


class NonFiniteLoss(GanzooError):
    """A loss became NaN or infinite."""

    exit_code = 3


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run reports."""

    out_dir: Path
    step: int
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    #: the end-of-run evaluation (``log.final_eval``), as :func:`ganzoo.evaluation.evaluate` returns it
    evaluation: dict[str, Any] | None = None
    #: why the run ended before ``total_steps`` (``train.early_stop``), None when it did not
    stopped_early: str | None = None


#: ``ganzoo eval``'s weight-file flags and the recipe keys that give the same files during training.
EVAL_WEIGHT_FLAGS = {"--inception-weights": "train.eval_weights.inception",
                     "--lpips-weights": "train.eval_weights.lpips"}


def schedule_lengths(recipe: Recipe, steps_per_epoch: int) -> tuple[int, int]:
    """(total steps, steps of LR decay): from ``train.max_steps`` when set, else from the epochs."""
    train = recipe.train
    epochs, decay = train.epochs, train.epochs_decay
    if train.max_steps:
        total = train.max_steps
        return total, round(total * decay / (epochs + decay)) if epochs + decay > 0 else 0
    return (epochs + decay) * steps_per_epoch, decay * steps_per_epoch


def loader_workers(requested: int | None) -> int:
    """DataLoader worker processes for ``data.workers``: null picks min(4, CPUs this process may use);
    a number is kept, but never above those CPUs (more only contend for them, and PyTorch warns)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if requested is None:
        return min(4, cpus)
    return min(int(requested), cpus)


@dataclass
class TrainingParts:
    """A model ready to train and what updates it: as ``ganzoo train`` and ``ganzoo bench`` build it."""

    model: torch.nn.Module
    accelerators: dict[str, Any]
    optimizers: dict[str, torch.optim.Optimizer]
    updater: Updater

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One training step of the model on ``batch``."""
        self.updater.begin_step()
        return self.model.train_step(batch, self.updater)


def build_training(recipe: Recipe, device: torch.device, *, dist: Any = None, console: Console | None = None,
                   sample_batch: dict[str, torch.Tensor] | None = None) -> TrainingParts:
    """The recipe's model on ``device`` with its layout, compilation, accelerator plugins, data
    parallelism (``dist``), optimizers and :class:`Updater`.

    ``sample_batch`` (a few training inputs) goes to the model's ``materialize`` hook right after the
    model is built, before anything else touches its networks."""
    train = recipe.train
    model_cls = get_component("model", recipe.model.type).factory
    model = model_cls(recipe, device)
    if sample_batch is not None:
        # First, so that what it creates (lazy heads) gets the layout, accelerators, compilation and
        # data parallelism every other network gets, and an optimizer.
        model.materialize(sample_batch)
    if train.channels_last:
        model.networks.to(memory_format=torch.channels_last)
    accelerators = build_accelerators(train.accelerators)
    notices = prepare_all(accelerators, model, recipe, device)
    if console is not None and (dist is None or dist.is_main):
        for notice in notices:
            console.print(f"[yellow]note:[/] {notice}", highlight=False)
    if train.compile:
        # nn.Module.compile keeps the modules and their state-dict keys: checkpoints, optimizers and
        # functional_call see the same parameters as without compiling
        for net in model.networks.values():
            net.compile()
    distributed = dist is not None and dist.enabled
    if distributed:
        wrap_networks(model, dist, console)
    optimizers = make_optimizers(model.networks, model_cls.update_groups(recipe.model), train.optimizer,
                                 train.optimizers, device)
    # DDP averages gradients after their accumulation: no updates inside its backward
    updater = Updater(optimizers, train.precision, device, nonfinite=train.nonfinite,
                      step_in_backward=train.step_in_backward and not distributed)
    prepare_updaters(accelerators, updater)
    return TrainingParts(model, accelerators, optimizers, updater)


class Trainer:
    """Assembles model, data, schedules and logging from a resolved recipe and runs the loop.

    The model says what to optimise (its update groups and their losses, in the official order);
    the Trainer says how: it builds the optimizers, the schedulers and the :class:`Updater`
    (precision, non-finite policy, updates inside the backward), wraps the networks for data
    parallelism and applies the recipe's accelerators.
    """

    def __init__(self, recipe: Recipe, out_dir: str | os.PathLike[str], *, resume: bool = False,
                 show_progress: bool = True, console: Console | None = None) -> None:
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.show_progress = show_progress
        self.console = console or Console(stderr=True)
        # One trainer per run folder: the CLI takes the lock first; an API caller's Trainer takes it here.
        self._run_lock: RunLock | None = None
        rank, world, _ = launch_environment()
        if not held_here(self.out_dir) and not inherited(self.out_dir) and (world <= 1 or rank == 0):
            self._run_lock = RunLock(self.out_dir).acquire()
        try:
            self._set_up(recipe, show_progress)
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _set_up(self, recipe: Recipe, show_progress: bool) -> None:
        train = recipe.train
        require_wandb(recipe.log.wandb)  # log.wandb without the package: fail now, never mid-run
        self.checkpoints = CheckpointDir(self.out_dir / "checkpoints", keep_last=recipe.log.keep_last)
        self._check_out_dir()
        # One process, or one rank of a torchrun launch (rank, device and process group from the env).
        self.dist = setup_distributed(train.device)
        self.device = self.dist.device
        configure_kernels(self.device, kernel_flags(recipe))
        seed_everything(train.seed)
        # Rank 0 generates the shapes world (when the recipe asks) before the other ranks read it.
        if not self.dist.is_main:
            self.dist.barrier()
        generating = recipe.data.shapes is not None and not Path(recipe.data.root).exists()
        with status("generating the shapes world…" if generating else "reading the training data…",
                    self.console, enabled=self.dist.is_main, spinner=show_progress):
            self.dataset = make_dataset(recipe, "train")
        if self.dist.is_main:
            self.dist.barrier()
        if recipe.data.bad_images == "skip":
            self._report_skipped_images(drop_unreadable_images(self.dataset))
        self.batch_size = train.batch_size  # the global batch, split over the ranks
        model_cls = get_component("model", recipe.model.type).factory
        check_memory(build_meta_networks(recipe), batch_size=self.batch_size, image_side=recipe.data.crop_size,
                     channels=(recipe.data.input_nc or 3) + (recipe.data.output_nc or 3), device=self.device)
        local_batch = check_batch_size(self.batch_size, self.dist.world_size, batch_multiple(model_cls))
        if len(self.dataset) < self.batch_size:
            raise DataError(f"{recipe.data.root}: the training split has {len(self.dataset)} image(s), "
                            f"fewer than train.batch_size={self.batch_size}")
        self.sampler = ResumableBatchSampler(len(self.dataset), local_batch, seed=train.seed,
                                             rank=self.dist.rank, world_size=self.dist.world_size)
        self.steps_per_epoch = len(self.sampler)
        self.total_steps, self.decay_steps = schedule_lengths(recipe, self.steps_per_epoch)
        workers = loader_workers(recipe.data.workers)
        # The loader's own generator keeps its per-epoch seed draw out of the global RNG stream,
        # which a resumed run must replay exactly.
        self.loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=workers,
                                 collate_fn=collate_items,  # a size mismatch names its files
                                 pin_memory=self.device.type == "cuda", generator=torch.Generator(),
                                 persistent_workers=workers > 0 and epoch_reaches_persistent_workers(self.dataset))
        with status("building networks…", self.console, enabled=self.dist.is_main, spinner=show_progress):
            self._sample_batch = self._sample_inputs()
            self.parts = build_training(recipe, self.device, dist=self.dist, console=self.console,
                                        sample_batch=self._sample_batch)
        self.model, self.accelerators = self.parts.model, self.parts.accelerators
        self.optimizers, self.updater = self.parts.optimizers, self.parts.updater
        self._sample_z = self.model.sample_codes(4, torch.Generator().manual_seed(1234))
        self.nonfinite = train.nonfinite
        self.ema = GeneratorEMA(self.model, train.ema) if train.ema > 0 else None
        self.dist.seed_rank_stream(train.seed, 0)
        self.schedulers = {name: self._make_scheduler(opt) for name, opt in self.optimizers.items()}
        self.step = 0
        self._eval_data: Any = None  # the val split, built on the first train.eval_every evaluation
        self._eval_off = False
        self._eval_warned: set[str] = set()  # what an evaluation could not do, said once per run
        self._stop_signal: int | None = None
        self.skipped_steps = 0
        # train.early_stop and log.keep_best (ganzoo.training.monitor); stopped_early: why the run ended early
        self.early_stop = EarlyStopping(train.early_stop.to_dict()) if train.early_stop is not None else None
        self.keep_best = BestKeeper(recipe.log.keep_best.to_dict()) if recipe.log.keep_best is not None else None
        self.stopped_early: str | None = None
        if self.early_stop is not None and self.early_stop.watched.is_metric and self.dist.enabled:
            raise RecipeError("train.early_stop.watch", "an evaluation score cannot be watched in a multi-process run "
                              "(rank 0 alone evaluates)", hint="watch a loss, or train on one process")
        if self.dist.is_main:  # a disk that cannot hold a checkpoint fails now, not hours from now
            self.checkpoints.check_space(estimate_checkpoint_bytes(self.state(), self.optimizers.values()))

    # -- set-up -------------------------------------------------------------------------------
    def _check_out_dir(self) -> None:
        has_run = self.checkpoints.latest.exists() or bool(self.checkpoints.step_files())
        if has_run and not self.resume:
            raise RunFolderError(f"{self.out_dir} already holds a run (checkpoints found); nothing was changed",
                              hint=f"continue it with `ganzoo train --resume {self.out_dir}` or pick another --out")
        if self.resume and not has_run:
            raise CheckpointError(f"{self.out_dir} has no checkpoints to resume from")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise RunFolderError(f"cannot write to the output folder {self.out_dir}: {exc.strerror or exc}") from None

    def _report_skipped_images(self, skipped: list[tuple[str, str]]) -> None:
        """Say which images ``data.bad_images: skip`` left out, on screen and in OUT/skipped_images.txt."""
        if not skipped or not self.dist.is_main:
            return
        report = self.out_dir / "skipped_images.txt"
        report.write_text("".join(f"{path}\t{reason}\n" for path, reason in skipped))
        self.console.print(f"[yellow]skipped {len(skipped)} unreadable image(s)[/] (data.bad_images=skip), "
                           f"e.g. {skipped[0][0]}; the full list is in {report}")

    def _make_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        spec = dict(self.recipe.train.scheduler)
        kind = spec.pop("type")
        warmup_steps = int(spec.pop("warmup_steps", 0) or 0)  # around any scheduler (ganzoo.schedulers.with_warmup)
        if kind == "linear" and spec.get("decay_steps") is None:
            spec["decay_steps"] = self.decay_steps
        try:
            scheduler = build("scheduler", kind, optimizer=optimizer, total_steps=max(1, self.total_steps), **spec)
        except ComponentError as exc:  # an argument's value out of range: name the recipe key it came from
            raise RecipeError("train.scheduler", exc.message, hint=exc.hint) from None
        return with_warmup(scheduler, warmup_steps)

    def _sample_inputs(self) -> dict[str, torch.Tensor]:
        """A fixed handful of inputs for sample grids (the val split when there is one)."""
        try:
            source = make_dataset(self.recipe, "val")
        except (DataError, RecipeError):
            source = self.dataset
        n = min(4, len(source))
        batch = collate_items([source[i] for i in range(n)])
        return {k: batch[k] for k in ("A", "B")}

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "recipe": self.recipe.to_dict(),
            "networks": {name: net.state_dict() for name, net in self.model.networks.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "model_state": self.model.extra_state(),
            "updater": self.updater.state_dict(),
            "accelerators": accelerator_states(self.accelerators),
            "rng": rng_state(),
            "device": device_name(self.device),  # where it ran: a resume elsewhere says so (the recipe may say "auto")
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            **self._monitor_state(),
        }

    def _monitor_state(self) -> dict[str, Any]:
        """``train.early_stop`` / ``log.keep_best`` progress, and ``stopped_early`` once the run ended early."""
        state: dict[str, Any] = {}
        if self.early_stop is not None or self.keep_best is not None:
            state["monitor"] = {"early_stop": self.early_stop.state_dict() if self.early_stop is not None else None,
                                "keep_best": self.keep_best.state_dict() if self.keep_best is not None else None}
        if self.stopped_early is not None:
            state["stopped_early"] = self.stopped_early
        return state

    def _load_monitor_state(self, payload: dict[str, Any]) -> None:
        monitor = payload.get("monitor") or {}
        if self.early_stop is not None and monitor.get("early_stop"):
            self.early_stop.load_state_dict(monitor["early_stop"])
        if self.keep_best is not None and monitor.get("keep_best"):
            self.keep_best.load_state_dict(monitor["keep_best"])
        stopped = payload.get("stopped_early")
        if stopped and payload.get("total_steps", self.total_steps) == self.total_steps:
            self.stopped_early = str(stopped)  # it finished: a resume has nothing to do
        elif stopped and self.early_stop is not None:  # lengthened after an early stop: patience starts afresh
            self.early_stop.bad_checks, self.early_stop.reason = 0, None

    def load_state(self, payload: dict[str, Any], source: str) -> None:
        if payload.get("resumable") is False or "optimizers" not in payload:
            raise CheckpointError(
                f"{source} holds network weights only (e.g. made by `ganzoo import-official`), "
                "so training cannot resume from it: optimizer, schedule and RNG states are missing",
                hint="sample or evaluate it with `ganzoo sample` / `ganzoo eval`, or start a new run")
        for name, net in self.model.networks.items():
            if name not in payload["networks"]:
                raise CheckpointError(f"{source} has no network {name} (it has {', '.join(payload['networks'])})")
            load_network_state(name, net, payload["networks"][name], source)
        parts = (("optimizer", self.optimizers, payload.get("optimizers", {})),
                 ("scheduler", self.schedulers, payload.get("schedulers", {})))
        for what, own, stored in parts:
            for name, obj in own.items():
                if name not in stored:
                    raise CheckpointError(f"{source} has no {what} state for {name} (it has {', '.join(stored)})",
                                          hint="the checkpoint was made by another recipe or ganzoo version")
                try:
                    obj.load_state_dict(stored[name])
                except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                    raise CheckpointError(f"{what} {name} in {source} does not fit this recipe's: {exc}",
                                          hint="the checkpoint was made by another recipe or ganzoo version") from None
        if payload.get("total_steps", self.total_steps) != self.total_steps:
            self._stretch_schedules()
        self.model.load_extra_state(payload.get("model_state", {}))
        # earlier versions kept the grad scalers in the model's state
        self.updater.load_state_dict(payload.get("updater", payload.get("model_state", {}).get("precision", {})))
        load_accelerator_states(self.accelerators, payload.get("accelerators", {}), source)
        if self.ema is not None and payload.get("ema"):
            self.ema.load_state_dict(payload["ema"], source)
        elif self.ema is not None:  # train.ema switched on for a resumed run: the average starts here
            self.ema = GeneratorEMA(self.model, self.ema.decay)
        set_rng_state(payload["rng"])
        self.step = int(payload["step"])
        self._load_monitor_state(payload)
        self.dist.seed_rank_stream(self.recipe.train.seed, self.step)
        trained_on = stored_device(payload)
        if trained_on is not None and trained_on != device_name(self.device) and self.dist.is_main:
            self.console.print(f"[yellow]note:[/] this run was trained on {trained_on} and continues on {self.device}",
                               highlight=False)

    def _stretch_schedules(self) -> None:
        """A resumed run that was lengthened (``--set train.max_steps``) follows the new schedule's rule
        from its current step on; the saved state would otherwise bring back the old length."""
        for name, sched in self.schedulers.items():
            fresh = self._make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
            sched, fresh = getattr(sched, "scheduler", sched), getattr(fresh, "scheduler", fresh)  # under a warm-up
            for mine, new in zip(getattr(sched, "lr_lambdas", []), getattr(fresh, "lr_lambdas", [])):
                if hasattr(mine, "__dict__") and not callable(getattr(mine, "__self__", None)):
                    mine.__dict__.update(vars(new))
            for attr in ("T_max", "step_size"):
                if hasattr(sched, attr):
                    setattr(sched, attr, getattr(fresh, attr))

    def save_checkpoint(self, milestone: bool = False) -> Path:
        self._stop_if_nonfinite()  # no checkpoint ever holds what a non-finite step made
        # Rank 0 writes; the barrier keeps other ranks from finishing before the file exists.
        if self.dist.is_main:
            path = self.checkpoints.save(self.state(), self.step, milestone=milestone)
        else:
            path = self.checkpoints.root / f"step_{self.step:08d}.pt"
        self.dist.barrier()
        return path

    # -- the loop ----------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current step and write a checkpoint (what Ctrl-C and SIGTERM do)."""
        self._stop_signal = signum

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop now, the last checkpoint stays
            raise KeyboardInterrupt(*self._forced_stop_message())
        self._stop_signal = signum
        if self.dist.is_main:
            self.console.print(f"[yellow]{signal.Signals(signum).name}: finishing this step, then writing a checkpoint[/]")

    def _forced_stop_message(self) -> tuple[str, str]:
        """What a second Ctrl-C says: ``(message, hint)`` naming the last checkpoint and how to resume."""
        last = self.checkpoints.step_files()
        if not last:
            return (f"stopped at once at step {self.step}/{self.total_steps} (second Ctrl-C); no checkpoint had "
                    "been written yet", f"start again with --out {self.out_dir}, or wait for the checkpoint "
                    "a single Ctrl-C writes")
        step, path = last[-1]
        return (f"stopped at once at step {self.step}/{self.total_steps} (second Ctrl-C); the last checkpoint is "
                f"{path} (step {step})", f"resume with: ganzoo train --resume {self.out_dir}")

    def _step_schedulers(self, losses: dict[str, torch.Tensor]) -> None:
        for sched in self.schedulers.values():
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) or getattr(sched, "needs_metric", False):
                sched.step(float(losses.get("G_total", 0.0)))
            else:
                sched.step()

    def _snapshot_buffers(self) -> list[torch.Tensor] | None:
        """Copies of the running statistics, which a skipped step must not change (``nonfinite: skip``)."""
        if self.updater.deferred:
            return None
        return [b.detach().clone() for b in self.model.networks.buffers()]

    def _skip_if_nonfinite(self, losses: dict[str, torch.Tensor], buffers: list[torch.Tensor] | None) -> bool:
        """``train.nonfinite: skip``: whether this step counts as applied; a step with a NaN/inf loss,
        gradient or running statistic is skipped (its running statistics restored) and counted."""
        refused = list(self.updater.skipped)
        self.updater.skipped.clear()
        values = torch.stack([v.float().reshape(()) for v in losses.values()]) if losses else torch.zeros(1)
        own = list(self.model.networks.buffers())
        statistics_finite = all(bool(torch.isfinite(b).all()) for b in own if torch.is_floating_point(b))
        if not refused and statistics_finite and bool(torch.isfinite(values).all()):
            return True
        bad = [k for k, v in losses.items() if not math.isfinite(float(v))]
        what = f"loss {', '.join(bad)}" if bad else ("the gradients" if refused else "the running statistics")
        not_applied = (f"the update(s) of {', '.join(refused)} were not applied" if refused
                       else "the updates were applied")
        if buffers is not None:  # running statistics saw the same non-finite forward pass
            with torch.no_grad():
                for mine, saved in zip(own, buffers):
                    mine.copy_(saved)
        self.skipped_steps += 1
        if self.dist.is_main:
            self.console.print(f"[yellow]step {self.step + 1}: {what} non-finite; {not_applied} "
                               f"(train.nonfinite=skip, {self.skipped_steps} skipped so far)[/]")
        return False

    def _stop_if_nonfinite(self) -> None:
        """``train.nonfinite: stop``: read the updater's flag (one sync) and stop with the step it
        was first set; no update was made from then on, and no checkpoint has been written since."""
        if self.dist.enabled:  # every rank stops at the same step
            torch.distributed.all_reduce(self.updater.nonfinite_flag, op=torch.distributed.ReduceOp.MAX)
        found = self.updater.nonfinite_report()
        if found is None:
            return
        bad = [] if found.losses else nonfinite_buffers(self.model.networks)
        what = (f"loss {', '.join(found.losses)}" if found.losses else
                f"running statistic {bad[0]}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "") if bad
                else "a gradient")
        last = self.checkpoints.step_files()
        kept = (f"the last good checkpoint {last[-1][1]} is untouched" if last
                else "no checkpoint had been written yet")
        raise NonFiniteLoss(
            f"{what} became non-finite at step {found.step} (no update was applied from then on); training "
            f"stopped at step {self.step} and {kept}",
            hint="lower train.optimizer.lr, use train.precision=fp32, set train.nonfinite=skip to skip such "
                 f"steps, or resume with `ganzoo train --resume {self.out_dir}`")

    def run(self) -> TrainResult:
        """Train to ``total_steps`` (resuming first when asked), then write a final checkpoint."""
        from ganzoo.recipe import dump_recipe

        if self.resume:
            self.checkpoints.remove_stale_temp_files()  # left by a run killed mid-write
            payload, path = self.checkpoints.load_latest(
                warn=lambda message: self.console.print(f"[yellow]warning:[/] {message}", highlight=False))
            self.load_state(payload, str(path))
            if self.dist.is_main:
                self.console.print(f"resumed from {path} at step {self.step}/{self.total_steps}")
        elif self.dist.is_main:
            (self.out_dir / "recipe.yaml").write_text(dump_recipe(self.recipe))
        log = self.recipe.log
        main = self.dist.is_main  # rank 0 alone logs, writes samples and checkpoints
        run_log = RunLog(self.out_dir, self.recipe.to_dict(), enabled=main, console=self.console)
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = {}
        if in_main_thread:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._request_stop)
        started = time.perf_counter()
        start_step = self.step
        last_losses: dict[str, torch.Tensor] = {}
        try:
            if main and self.recipe.log.wandb is not None:
                run_log.sinks.append(WandbLogger(self.recipe.log.wandb, self.recipe, self.out_dir))
            with run_log.progress(self.total_steps, self.step, enabled=self.show_progress and main) as progress:
                progress.status("first step…")
                while self.step < self.total_steps and self.stopped_early is None:
                    epoch, position = divmod(self.step, self.steps_per_epoch)
                    if hasattr(self.dataset, "set_epoch"):
                        self.dataset.set_epoch(epoch)
                    self.sampler.set_position(epoch, position)
                    for batch in self.loader:
                        # Samples and evaluations switch to eval mode; walking every module to set train mode
                        # is not free on a small step, so only when something switched it off.
                        if not self.model.training:
                            self.model.train()
                        buffers = self._snapshot_buffers()
                        self.model.set_step(self.step)
                        last_losses = self.parts.step(batch)
                        # Several ranks: average the losses and agree on stopping (one all-reduce).
                        last_losses, stop = self.dist.agree(last_losses, self._stop_signal is not None)
                        if self.updater.deferred:  # nonfinite: stop, checked on the device, read when logging
                            self.updater.end_step(self.step + 1, last_losses, self.model.networks.buffers())
                            applied = True
                        else:
                            applied = self._skip_if_nonfinite(last_losses, buffers)
                        self._step_schedulers(last_losses)
                        if self.ema is not None and applied:  # a skipped step is no new weights to average
                            self.ema.update(self.model)
                        self.step += 1
                        progress.advance(self.step, last_losses)
                        if self.early_stop is not None and self.early_stop.loss_mean is not None:
                            self.early_stop.loss_mean.add(last_losses)  # on the device: no sync per step
                        if self.step % log.every == 0 or self.step == self.total_steps:
                            self._stop_if_nonfinite()
                            run_log.scalars(self.step, last_losses, self.optimizers,
                                            {term: self.model.weights[term] for term in self.model.loss_warmup})
                            self._check_watched_loss(last_losses)
                        if main and (self.step % log.samples_every == 0 or self.step == self.total_steps):
                            self.write_samples(run_log)
                        eval_every = self.recipe.train.eval_every
                        if main and eval_every and not self._eval_off and (self.step % eval_every == 0
                                                                           or self.step == self.total_steps):
                            self.evaluate(run_log)
                        if self.stopped_early is not None:  # train.early_stop: the milestone below ends the run
                            break
                        if self._checkpoint_due() and self.step < self.total_steps:
                            self.save_checkpoint()
                        if stop:
                            path = self.save_checkpoint()
                            raise TrainingInterrupted(
                                f"stopped at step {self.step}/{self.total_steps}; checkpoint written to {path}",
                                hint=f"resume with: ganzoo train --resume {self.out_dir}")
                        if self.step >= self.total_steps:
                            break
            if self.step > start_step or not self.resume:  # a resume with nothing to do rewrites nothing
                path = self.save_checkpoint(milestone=True)
                if self.stopped_early is not None and main:
                    self.console.print(f"[yellow]stopped early[/] at step {self.step}/{self.total_steps}: "
                                       f"{self.stopped_early}; final checkpoint {path}", highlight=False)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                run_log.close()
            finally:
                self._release_lock()
        seconds = time.perf_counter() - started
        result = TrainResult(self.out_dir, self.step, self.total_steps,
                             {k: float(v) for k, v in last_losses.items()}, seconds, stopped_early=self.stopped_early)
        summary = {"step": result.step, "total_steps": result.total_steps, "losses": result.losses,
                   "seconds": round(seconds, 3), "steps_this_session": self.step - start_step,
                   "device": str(self.device), "world_size": self.dist.world_size,
                   "skipped_steps": self.skipped_steps, "stopped_early": self.stopped_early is not None,
                   **({"stop_reason": self.stopped_early} if self.stopped_early is not None else {}),
                   **({"best": self.keep_best.info()} if self.keep_best is not None else {})}
        if main:
            if self.step > start_step or not (self.out_dir / "summary.json").exists():
                (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            if self.recipe.log.final_eval and self.step > start_step and (self.step >= self.total_steps
                                                                          or self.stopped_early is not None):
                result.evaluation = self.final_report()
        return result

    def final_report(self) -> dict[str, Any] | None:
        """``log.final_eval``: the val-split scores, a labelled sample sheet and their paths, on screen
        (:func:`ganzoo.training.run_log.final_report`). Never fails the finished run: a failure is a warning."""
        from ganzoo.training.run_log import final_report

        try:
            with self._averaged_weights():
                return final_report(self.model, self.recipe, self.out_dir, console=self.console, step=self.step,
                                    weight_average=self.ema is not None)
        except Exception as exc:  # noqa: BLE001  (the run and its checkpoints are complete already)
            detail = (exc.message if isinstance(exc, GanzooError) else str(exc)).splitlines() or [""]
            self.console.print(f"[yellow]warning:[/] the final evaluation failed ({type(exc).__name__}: "
                               f"{detail[0]}); the run is complete, `ganzoo eval {self.out_dir}` scores it",
                               highlight=False)
            return None

    def evaluate(self, run_log: RunLog) -> dict[str, Any] | None:
        """Score the model on the val split (``train.eval_every``): TensorBoard ``eval/*`` and OUT/eval.jsonl."""
        from ganzoo.evaluation import evaluate, evaluation_dataset, flat_scores, log_to_tensorboard, weight_options

        if self._eval_data is None:
            try:
                self._eval_data = evaluation_dataset(self.recipe, "val")
            except (DataError, RecipeError) as exc:
                self.console.print(f"[yellow]train.eval_every: no val split to evaluate on ({exc.message}); "
                                   "evaluation is off for this run[/]")
                self._eval_off = True
                return None
        train = self.recipe.train
        options = weight_options(train.eval_weights.inception, train.eval_weights.lpips)
        try:  # an evaluation never stops a run: what it cannot do is recorded and said once
            with self._averaged_weights():
                result = evaluate(self.model, dataset=self._eval_data, metrics=train.eval_metrics,
                                  metric_options=options, strict=False)
        except Exception as exc:  # noqa: BLE001  (a metric's failure must not cost the training)
            detail = (exc.message if isinstance(exc, GanzooError) else str(exc)).splitlines() or [""]
            self._warn_once(f"evaluation:{type(exc).__name__}",
                            f"the evaluation at step {self.step} failed ({type(exc).__name__}: {detail[0]}); "
                            "training goes on, and later evaluations try again")
            return None
        for name, message in result["unavailable"].items():
            # the hint names ganzoo eval's flags: during training the weight files are recipe keys
            for flag, key in EVAL_WEIGHT_FLAGS.items():
                message = message.replace(flag, key)
            text = result["unavailable"][name] = message.replace("\n  hint: ", "; ")
            self._warn_once(f"unavailable:{name}", f"metric {name} is unavailable during training and is recorded "
                            f"as such in eval.jsonl: {text}")
        for name, reason in result["skipped"].items():
            if train.eval_metrics is not None and name in train.eval_metrics:
                self._warn_once(f"skipped:{name}", f"metric {name} in train.eval_metrics does not apply here: {reason}")
        result["step"] = self.step
        if run_log.writer is not None:
            log_to_tensorboard(result, run_log.writer, self.step)
            run_log.to_sinks({f"eval/{k}": v for k, v in flat_scores(result).items()}, self.step)
        with open(self.out_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        self._watch_evaluation(result)
        return result

    # -- train.early_stop, log.keep_best, log.checkpoint_every_epochs -----------------------------------
    def _checkpoint_due(self) -> bool:
        """A periodic checkpoint at this step: every ``log.checkpoint_every`` steps, and at the end of
        every ``log.checkpoint_every_epochs`` epochs."""
        log = self.recipe.log
        epochs = log.checkpoint_every_epochs
        return self.step % log.checkpoint_every == 0 or (bool(epochs) and self.step % (epochs * self.steps_per_epoch) == 0)

    def _check_watched_loss(self, losses: dict[str, torch.Tensor]) -> None:
        """``train.early_stop`` on a loss: its mean since the last log step, one check per log step."""
        stopper = self.early_stop
        if stopper is None or stopper.loss_mean is None or self.stopped_early is not None:
            return
        value = stopper.loss_mean.read(stopper.key, list(losses))  # a name the run never logged: RecipeError
        if stopper.update(value, self.step):
            self.stopped_early = stopper.reason

    def _watch_evaluation(self, result: dict[str, Any]) -> None:
        """``log.keep_best`` (checkpoints/best.pt) and ``train.early_stop`` on an evaluation score."""
        if self.keep_best is not None:
            value = score_of(result, self.keep_best.watched, self.keep_best.key)
            if self.keep_best.update(value, self.step):
                self._stop_if_nonfinite()  # best.pt never holds what a non-finite step made
                path = self.checkpoints.save_best(self.state(), self.keep_best.info())
                self.console.print(f"best {self.keep_best.watched.name} so far ({value:.4g}) at step {self.step}: "
                                   f"{path}", highlight=False)
        stopper = self.early_stop
        if stopper is not None and stopper.watched.is_metric and self.stopped_early is None:
            if stopper.update(score_of(result, stopper.watched, stopper.key), self.step):
                self.stopped_early = stopper.reason

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._eval_warned:
            self._eval_warned.add(what)
            self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def _averaged_weights(self) -> AbstractContextManager[None]:
        """Samples and evaluations see what ``ganzoo.load`` will give: the weight average when kept."""
        return self.ema.applied(self.model) if self.ema is not None else nullcontext()

    @torch.no_grad()
    def write_samples(self, run_log: RunLog) -> Path:
        self.model.eval()
        # pix2pix evaluates in train mode in the official code (dropout as noise); samples here are
        # taken in eval mode for stable grids, except that batch norm keeps running statistics.
        with self._averaged_weights():
            rows = self.model.visuals(self._sample_batch, self._sample_z)
        self.model.train()
        return run_log.sample_grid(self.step, rows)
