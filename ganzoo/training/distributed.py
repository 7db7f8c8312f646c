"""Training on several processes (GPUs, or CPU workers) with PyTorch's own distributed engine.

A run on N processes is started by ``torchrun`` (``torchrun --nproc-per-node N -m ganzoo train
RECIPE``, any number of nodes) or by ``ganzoo train --nproc N RECIPE``, which calls the same
launcher on this machine. Each process reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the
environment torchrun sets, joins the process group (NCCL on CUDA, Gloo on the CPU) and trains on its
slice of every global batch. The rules (see ``docs/distributed.md``):

- ``train.batch_size`` is the **global** batch: each of the N ranks gets ``batch_size / N`` samples
  per step (the batch must divide evenly; BicycleGAN's per-rank batch must also be even, since every
  rank splits its own batch into a cVAE-GAN and a cLR-GAN half).
- One step is one global batch, whatever N is; the data position is ``(epoch, step in epoch)``
  derived from the step, so a checkpoint resumes on any number of processes that divides the batch.
- Every network is wrapped in :class:`DistributedNetwork`: gradients are averaged across ranks by
  ``DistributedDataParallel`` during the backward pass; calls that train nothing (a discriminator
  frozen for the generator step, sampling under ``no_grad``) bypass DDP. Checkpoints hold the
  unwrapped weights under the usual names.
- Rank 0 alone writes logs, sample grids, checkpoints and the summary; losses are averaged over
  the ranks before they are checked and logged, so every rank stops (on NaN or a signal) together.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ganzoo.errors import GanzooError, RecipeError
from ganzoo.training.device import resolve_device
from ganzoo.training.rng import seed_everything

# Set when this module created the default process group (and so must destroy it).
_owns_process_group = False


class WorkerFailed(GanzooError):
    """One or more training processes of a multi-process run exited with an error."""

    def __init__(self, message: str, exit_code: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a run: its rank among ``world_size`` processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """Whether gradients, losses and barriers go through a process group."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, samples and checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to wait for on one process)."""
        if self.enabled:
            dist.barrier()

    def local_batch_size(self, global_batch: int) -> int:
        """This rank's share of a global batch (:func:`check_batch_size` has checked that it divides)."""
        return global_batch // self.world_size

    def agree(self, losses: dict[str, torch.Tensor], stop: bool) -> tuple[dict[str, torch.Tensor], bool]:
        """Average the step's losses over the ranks and decide together whether to stop.

        One small all-reduce per step. Every rank then sees the same values, so a non-finite loss
        on any rank stops all of them at the same step, and a signal caught by any rank stops every
        rank after the same step (otherwise the others would wait forever in the next collective).
        """
        if not self.enabled:
            return losses, stop
        names = list(losses)
        values = [losses[k].detach().float().reshape(()) for k in names]
        flag = torch.tensor(1.0 if stop else 0.0, device=self.device)
        packed = torch.stack(values + [flag]).to(self.device)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        averaged = {k: packed[i] / self.world_size for i, k in enumerate(names)}
        return averaged, bool(packed[-1] > 0)

    def seed_rank_stream(self, seed: int, step: int) -> None:
        """Give ranks other than 0 their own random streams (dropout masks, BicycleGAN's z).

        Rank 0 keeps the run's own stream, the one checkpoints store, so a one-process run is
        unchanged. The others re-seed from (seed, rank, step): different noise per rank, and
        reproducible after a resume on any world size.
        """
        if self.rank > 0:
            seed_everything((seed * 1_000_003 + self.rank * 10_007 + step) % (2**63 - 1))


def launch_environment() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as torchrun sets them; ``(0, 1, 0)`` outside torchrun."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise GanzooError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None
    return rank, world, local_rank


def setup_distributed(device_spec: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes and pick this rank's device.

    On one process this only resolves ``train.device``. On several, CUDA ranks use the GPU
    ``cuda:LOCAL_RANK`` with the NCCL backend (an index in ``train.device`` is ignored: each rank
    owns one GPU) and CPU ranks use Gloo.
    """
    global _owns_process_group
    rank, world, local_rank = launch_environment()
    device = resolve_device(device_spec)
    if world <= 1:
        return DistributedContext(device=device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise GanzooError(f"LOCAL_RANK is {local_rank}, but this node has {torch.cuda.device_count()} GPU(s)",
                              hint="start at most one process per GPU (torchrun --nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
        _owns_process_group = True
    return DistributedContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the process group this module joined (no-op otherwise)."""
    global _owns_process_group
    if _owns_process_group and dist.is_initialized():
        dist.destroy_process_group()
    _owns_process_group = False


def batch_multiple(model_cls: type) -> int:
    """What each rank's batch must be a multiple of: the model's ``batch_multiple`` (BicycleGAN: 2), else 1."""
    return int(getattr(model_cls, "batch_multiple", 1))


def check_batch_size(global_batch: int, world_size: int, multiple: int = 1) -> int:
    """Return the per-rank batch, or raise RecipeError when ``train.batch_size`` cannot be split."""
    if world_size <= 1:
        return global_batch
    if global_batch % world_size:
        lower = max(world_size, global_batch // world_size * world_size)
        raise RecipeError("train.batch_size",
                          f"is {global_batch}, the global batch, which does not split evenly over {world_size} "
                          "processes", hint=f"use a multiple of {world_size}, e.g. {lower} or {lower + world_size}")
    local = global_batch // world_size
    if local % multiple:
        step = world_size * multiple
        raise RecipeError("train.batch_size",
                          f"is {global_batch}, so each of the {world_size} processes gets {local} sample(s), but this "
                          f"model needs a multiple of {multiple} per process (BicycleGAN splits every process's batch "
                          "into a cVAE-GAN half and a cLR-GAN half)",
                          hint=f"use a multiple of {step}, e.g. {max(step, global_batch // step * step)}")
    return local


def _trains(module: nn.Module) -> bool:
    """Whether a call builds a graph that will update ``module``'s weights."""
    return torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())


class DistributedNetwork(nn.Module):
    """A network whose training calls go through ``DistributedDataParallel``, with its own state dict.

    Calls that update the weights (grad mode on and the weights trainable) run through DDP, which
    all-reduces the gradients during backward. All other calls go straight to the network: a
    discriminator frozen with ``requires_grad_(False)`` for the generator step, sampling under
    ``no_grad``, and ``functional_call`` with detached weights (BicycleGAN's latent loss). Routing
    them through DDP would make it wait for gradients that never come.

    The DDP object is kept outside the module tree, and ``state_dict``/``load_state_dict`` are the
    network's own, so checkpoints carry the same keys as a one-process run. Attributes the network
    declares (``nz``, ``input_nc``...) read through.
    """

    def __init__(self, module: nn.Module, ddp: DistributedDataParallel) -> None:
        super().__init__()
        self.module = module
        self.__dict__["ddp"] = ddp  # not a submodule: its parameters are module's

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if _trains(self.module):
            return self.ddp(*args, **kwargs)
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("module")
            if inner is None:
                raise
            return getattr(inner, name)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


# Newer torch renames ``broadcast_buffers`` to ``forward_sync_buffers``; both mean "no buffer
# broadcast before every forward".
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
                   else {"broadcast_buffers": False})
# A GAN step uses each network the same way every step (same calls, same parameters), which is
# what ``static_graph`` asks: DDP then finds parameters without gradients once, in the first step,
# instead of searching the autograd graph after every forward as ``find_unused_parameters`` does,
# and accepts a network called several times before one backward (CycleGAN's generators).
_GRAPH_OPTIONS = {"static_graph": True}


def unwrap(net: nn.Module) -> nn.Module:
    """The plain network inside a :class:`DistributedNetwork` (the network itself otherwise)."""
    return net.module if isinstance(net, DistributedNetwork) else net


def _uses_batch_norm(net: nn.Module, cls: type = nn.modules.batchnorm._BatchNorm) -> bool:
    return any(isinstance(m, cls) for m in net.modules())


def wrap_networks(model: nn.Module, ctx: DistributedContext, console: Any = None) -> None:
    """Wrap every network of ``model`` for data-parallel training (nothing to do on one process).

    Batch norm becomes ``SyncBatchNorm`` on CUDA, so statistics cover the global batch as on one
    process. Gloo cannot synchronise batch norm: on CPU ranks it keeps per-rank statistics (the
    ``syncbatch`` norm is refused there). ``broadcast_buffers`` is off: synchronised batch norm
    keeps the running statistics equal on every rank, and rank 0's are the ones checkpointed.
    DDP runs with ``static_graph``: each network must be used the same way in every training step
    (true of the shipped models; a plugin model that, say, updates D only every other step must
    make such calls under ``torch.no_grad()`` or with the weights frozen).
    """
    if not ctx.enabled:
        return
    networks = model.networks
    for name in list(networks.keys()):
        net = networks[name]
        if ctx.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        elif _uses_batch_norm(net, nn.SyncBatchNorm):
            raise RecipeError(f"model.networks.{name}.norm",
                              "is syncbatch, which needs CUDA devices (the Gloo backend cannot synchronise it)",
                              hint="use norm batch on the CPU (per-process statistics) or train on GPUs")
        elif _uses_batch_norm(net) and ctx.is_main and console is not None:
            console.print(f"[yellow]note:[/] network {name} uses batch norm; CPU processes cannot synchronise "
                          "it, so its statistics come from each process's own share of the batch")
        if not any(p.requires_grad for p in net.parameters()):
            networks[name] = net  # fully frozen: nothing to synchronise
            continue
        ddp = DistributedDataParallel(
            net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            **_NO_BUFFER_SYNC, **_GRAPH_OPTIONS)
        networks[name] = DistributedNetwork(net, ddp)


def launch(nproc: int, child_args: list[str]) -> None:
    """Run ``python -m ganzoo CHILD_ARGS`` on ``nproc`` local processes through torchrun's launcher.

    ``--standalone`` gives the processes a private rendezvous on a free local port. A failed worker
    has printed its own message; this raises :class:`WorkerFailed` carrying its exit code.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "ganzoo", *child_args])
    try:
        run(args)
    except SignalException as exc:
        # The launcher passed the signal on; the ranks finished their step and rank 0 wrote a
        # checkpoint (its message above says where) before they exited.
        raise WorkerFailed(f"stopped by {exc.sigval.name}; the training processes stopped together after "
                           "the same step", 130) from None
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        code = next((c for c in codes if c and c > 0), 1)
        raise WorkerFailed(f"{len(codes)} of {nproc} training processes failed (exit code {code}); "
                           "their messages are above", code) from None
