"""Training on several processes: 2 CPU ranks with the Gloo backend, compared with one process.

pix2pix with instance norm and no dropout has a deterministic step, so a 2-process run with the
same global batch must give the same weights as a 1-process run, up to float rounding in the
gradient all-reduce. SGD keeps that comparison tight: Adam divides by the gradient's own size, so
weights whose true gradient is zero (conv biases before instance norm) move by +-lr on rounding
noise alone, whatever the number of processes.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from ganzoo.cli import main
from ganzoo.errors import RecipeError
from ganzoo.models.bicyclegan import BicycleGAN
from ganzoo.models.pix2pix import Pix2Pix
from ganzoo.training.checkpoint import load_checkpoint
from ganzoo.training.distributed import batch_multiple, check_batch_size

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PIX2PIX = RECIPES / "quickstart_pix2pix.yaml"

# 12 images, global batch 4: 3 steps per epoch, so 4 steps cross an epoch boundary and a resume at
# step 2 starts mid-epoch. epochs_decay=0 keeps the LR constant whatever max_steps is.
COMMON = [
    "data.shapes.size=32", "data.shapes.n_train=12", "data.shapes.n_val=2", "data.shapes.n_test=2",
    "data.load_size=32", "data.crop_size=32", "train.max_steps=4", "train.epochs_decay=0", "log.every=1",
    "log.samples_every=2", "log.checkpoint_every=2", "train.device=cpu",
]
PIX2PIX_INSTANCE = [
    "model.networks.G.num_downs=5", "model.networks.G.ngf=8", "model.networks.D.ndf=8",
    "model.networks.G.norm=instance", "model.networks.D.norm=instance", "model.networks.G.use_dropout=false",
    "train.batch_size=4", "train.optimizer={type: sgd, lr: 0.05, momentum: 0.9}",
]
# Weights after 4 steps, 1 vs 2 processes: ~2e-6 apart here (rounding); a gradient that is not
# averaged over the ranks shows as ~1e-2.
TOLERANCE = 5e-5


def set_args(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def max_weight_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert set(a["networks"]) == set(b["networks"])
    worst = 0.0
    for name, state in a["networks"].items():
        other = b["networks"][name]
        assert list(state) == list(other), f"{name}: state dict keys differ"
        for key, value in state.items():
            if value.is_floating_point():
                worst = max(worst, (value - other[key]).abs().max().item())
    return worst


def copy_checkpoint(src: Path, run_dir: Path) -> None:
    """A run folder holding only ``src`` as its latest checkpoint (to resume elsewhere)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(src, run_dir / "checkpoints" / src.name)
    shutil.copy(src, run_dir / "checkpoints" / "latest.pt")


# -- the batch rule: train.batch_size is the global batch ----------------------------------------
def test_global_batch_is_split_evenly_over_the_ranks() -> None:
    assert check_batch_size(8, 1) == 8
    assert check_batch_size(8, 2) == 4
    assert check_batch_size(8, 4, multiple=2) == 2
    with pytest.raises(RecipeError, match=r"train.batch_size: is 6, the global batch.*4 processes"):
        check_batch_size(6, 4)


def test_bicyclegan_needs_an_even_batch_on_every_rank() -> None:
    assert batch_multiple(BicycleGAN) == 2 and batch_multiple(Pix2Pix) == 1
    with pytest.raises(RecipeError, match=r"each of the 2 processes gets 3 sample.*multiple of 2") as info:
        check_batch_size(6, 2, multiple=batch_multiple(BicycleGAN))
    assert "use a multiple of 4" in str(info.value)


def _refused_nproc_run(tmp_path: Path) -> tuple[Any, Path]:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(PIX2PIX), "--out", str(out), "--nproc", "2", "--no-progress",
                                       *set_args(COMMON + PIX2PIX_INSTANCE + ["train.batch_size=3"])])
    return result, out


def test_nproc_refuses_a_batch_it_cannot_split_before_starting_processes(tmp_path: Path) -> None:
    result, _ = _refused_nproc_run(tmp_path)
    assert result.exit_code == 2, result.output
    assert "train.batch_size: is 3" in result.output and "2 processes" in result.output


def test_a_refused_nproc_run_leaves_no_run_folder(tmp_path: Path) -> None:
    result, out = _refused_nproc_run(tmp_path)
    assert result.exit_code == 2, result.output
    assert not out.exists()


# -- 2 processes against 1 -----------------------------------------------------------------------
def _rank_worker(rank: int, world: int, port: int, jobs: list[dict[str, Any]], report: str) -> None:
    """One rank of a Gloo group: run each job, then write what rank 0 saw to ``report``."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    from rich.console import Console

    from ganzoo.recipe import prepare_recipe, resolve_recipe
    from ganzoo.training.distributed import shutdown_distributed
    from ganzoo.training.trainer import Trainer

    results: dict[str, Any] = {}
    quiet = Console(file=io.StringIO())
    try:
        for job in jobs:
            if job["kind"] == "toy":
                results["toy"] = _toy_checks(rank, world)
                continue
            if job.get("resume"):
                recipe = resolve_recipe(load_checkpoint(Path(job["out"]) / "checkpoints" / "latest.pt")["recipe"])
            else:
                recipe = prepare_recipe(job["recipe"], job["sets"])
            trainer = Trainer(recipe, job["out"], resume=bool(job.get("resume")), show_progress=False, console=quiet)
            trainer.run()
            spread = {}
            for name, net in trainer.model.networks.items():
                flat = torch.cat([p.detach().flatten() for p in net.parameters()])
                gathered = [torch.empty_like(flat) for _ in range(world)]
                dist.all_gather(gathered, flat)
                spread[name] = max((g - gathered[0]).abs().max().item() for g in gathered)
            results[job["name"]] = spread
            results.setdefault("step_in_backward", {})[job["name"]] = trainer.updater.step_in_backward
    finally:
        shutdown_distributed()
    if rank == 0:
        Path(report).write_text(json.dumps(results))


class _Toy(nn.Module):
    """A network with a parameter no loss uses (DDP must not wait for its gradient)."""

    marker = "toy"

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


class _ToyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.networks = nn.ModuleDict({"T": _Toy()})


def _toy_checks(rank: int, world: int) -> dict[str, Any]:
    """DistributedNetwork: same state-dict keys, averaged gradients, frozen and functional calls bypass DDP."""
    import torch.distributed as dist
    from torch.func import functional_call

    from ganzoo.training.distributed import DistributedNetwork, setup_distributed, unwrap, wrap_networks

    ctx = setup_distributed("cpu")
    model = _ToyModel()
    raw_keys = list(model.networks["T"].state_dict())
    wrap_networks(model, ctx)
    net = model.networks["T"]
    out: dict[str, Any] = {"wrapped": isinstance(net, DistributedNetwork), "marker": net.marker,
                           "same_keys": list(net.state_dict()) == raw_keys}
    grad_errors = []
    for step in range(3):
        x = torch.full((2, 3), float(rank + 1 + step))
        # The gradient each rank would compute alone, averaged by hand.
        unwrap(net).zero_grad()
        local = torch.autograd.grad(unwrap(net)(x).pow(2).sum(), list(unwrap(net).used.parameters()))
        expected = [g.clone() for g in local]
        for g in expected:
            dist.all_reduce(g)
            g /= world
        net.zero_grad()
        net(x).pow(2).sum().backward()
        got = [unwrap(net).used.weight.grad, unwrap(net).used.bias.grad]
        grad_errors.append(max((a - b).abs().max().item() for a, b in zip(got, expected)))
        # Calls that train nothing must not involve DDP (it would wait for gradients that never come).
        for p in net.parameters():
            p.requires_grad_(False)
        x_in = torch.ones(2, 3, requires_grad=True)
        net(x_in).sum().backward()
        for p in net.parameters():
            p.requires_grad_(True)
        frozen = {k: v.detach() for k, v in net.named_parameters()}
        functional_call(net, frozen, (x_in,)).sum().backward()
        with torch.no_grad():
            net(x)
    out["grad_error"] = max(grad_errors)
    out["unused_grad"] = unwrap(net).unused.weight.grad is None
    return out


def _one_process_runs(recipe_args: list[str], paths: dict[str, Path], root: Path) -> None:
    result = CliRunner().invoke(main, ["train", *recipe_args, "--out", str(paths["one"])], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    # `ganzoo train --nproc 2`: torchrun's launcher, rendezvous on a free local port.
    proc = subprocess.run([sys.executable, "-m", "ganzoo", "train", *recipe_args, "--out", str(paths["two"]),
                           "--nproc", "2"], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # 2 ranks resume the 1-process run's step-2 checkpoint; 1 process resumes the 2-rank run's.
    copy_checkpoint(paths["one"] / "checkpoints" / "step_00000002.pt", paths["two_from_one"])
    copy_checkpoint(paths["two"] / "checkpoints" / "step_00000002.pt", paths["one_from_two"])
    result = CliRunner().invoke(main, ["train", "--resume", str(paths["one_from_two"]), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 1-process run, a 2-process run from the CLI, and resumes across world sizes."""
    root = tmp_path_factory.mktemp("distributed")
    data = [f"data.root={root / 'data'}"]
    recipe_args = [str(PIX2PIX), "--no-progress", *set_args(COMMON + PIX2PIX_INSTANCE + data)]
    paths = {name: root / name for name in ("one", "two", "two_from_one", "one_from_two")}
    # Every process computes with one thread, as each torchrun rank does: a different thread
    # count changes the float rounding of convolutions, which this GAN amplifies more than a
    # different batch split does.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _one_process_runs(recipe_args, paths, root)
    finally:
        torch.set_num_threads(threads)
    report = root / "report.json"

    tiny = COMMON + ["train.max_steps=2"]
    jobs = [
        {"kind": "train", "name": "two_from_one", "out": str(paths["two_from_one"]), "resume": True},
        {"kind": "toy"},
        # Networks called several times per step, frozen for the other player's update, or through
        # functional_call: every rank must still end with the same weights.
        {"kind": "train", "name": "cyclegan", "out": str(root / "cyclegan"),
         "recipe": str(RECIPES / "quickstart_cyclegan.yaml"),
         "sets": tiny + [f"data.root={root / 'unaligned'}", "train.batch_size=2", "model.networks.G_A.ngf=8",
                         "model.networks.G_B.ngf=8", "model.networks.D_A.ndf=8", "model.networks.D_B.ndf=8"]},
        {"kind": "train", "name": "bicyclegan", "out": str(root / "bicyclegan"),
         "recipe": str(RECIPES / "quickstart_bicyclegan.yaml"),
         "sets": tiny + [f"data.root={root / 'multimodal'}", "train.batch_size=4", "model.networks.G.num_downs=5",
                         "model.networks.G.ngf=8", "model.networks.E.nef=8", "model.networks.D.ndf=8",
                         "model.networks.D2.ndf=8"]},
    ]
    torch.multiprocessing.spawn(_rank_worker, args=(2, free_port(), jobs, str(report)), nprocs=2)
    paths["report"] = report
    return paths


def test_two_processes_match_one_process_with_the_same_global_batch(runs: dict[str, Path]) -> None:
    for step in ("step_00000002.pt", "step_00000004.pt"):
        one = load_checkpoint(runs["one"] / "checkpoints" / step)
        two = load_checkpoint(runs["two"] / "checkpoints" / step)
        assert one["step"] == two["step"]
        assert max_weight_difference(one, two) < TOLERANCE, step
    one = json.loads((runs["one"] / "summary.json").read_text())
    two = json.loads((runs["two"] / "summary.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    # The 2-process losses are averaged over the ranks: the losses of the global batch.
    assert one["losses"].keys() == two["losses"].keys()
    for key, value in one["losses"].items():
        assert two["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_rank_zero_alone_writes_samples_logs_and_checkpoints(runs: dict[str, Path]) -> None:
    two = runs["two"]
    assert sorted(p.name for p in (two / "samples").glob("*.png")) == ["step_00000002.png", "step_00000004.png"]
    assert len(list((two / "logs").glob("events.out.tfevents.*"))) == 1
    assert (two / "recipe.yaml").is_file()
    assert not list((two / "checkpoints").glob(".*tmp*"))


def test_a_checkpoint_resumes_on_a_different_number_of_processes(runs: dict[str, Path]) -> None:
    straight = load_checkpoint(runs["one"] / "checkpoints" / "latest.pt")
    for name in ("two_from_one", "one_from_two"):
        resumed = load_checkpoint(runs[name] / "checkpoints" / "latest.pt")
        assert resumed["step"] == 4
        assert max_weight_difference(straight, resumed) < TOLERANCE, name


def test_every_rank_ends_with_the_same_weights(runs: dict[str, Path]) -> None:
    report = json.loads(runs["report"].read_text())
    # DDP averages gradients once they are accumulated: no updates inside the backward
    assert report["step_in_backward"] == {"two_from_one": False, "cyclegan": False, "bicyclegan": False}
    for job in ("two_from_one", "cyclegan", "bicyclegan"):
        assert report[job], job
        for network, spread in report[job].items():
            assert spread == 0.0, f"{job}: network {network} differs between ranks by {spread}"


def test_distributed_network_averages_gradients_and_lets_frozen_calls_through(runs: dict[str, Path]) -> None:
    toy = json.loads(runs["report"].read_text())["toy"]
    assert toy["wrapped"] and toy["marker"] == "toy"
    assert toy["same_keys"], "wrapping changed the state dict keys"
    assert toy["grad_error"] < 1e-6
    assert toy["unused_grad"], "a parameter no loss uses received a gradient"
