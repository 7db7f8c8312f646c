"""Independent updates side by side: the same bits as in turn, threads restored, errors surfaced."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from ganzoo.bench import build_parts, synthetic_batch
from ganzoo.recipe import prepare_recipe
from ganzoo.training.updates import Updater, run_in_order
from ganzoo_cpu_kernels import CpuKernels, cpu_allocator
from ganzoo_cpu_kernels.side_by_side import SideBySide

QUICKSTART = Path(__file__).resolve().parents[3] / "recipes" / "quickstart_bicyclegan.yaml"
TINY = ["train.batch_size=4", "model.networks.G.ngf=8", "model.networks.E.nef=8", "model.networks.D.ndf=8",
        "model.networks.D2.ndf=8"]


def _weights_after_two_steps(runner: object, threads: int) -> dict[str, torch.Tensor]:
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        recipe = prepare_recipe(QUICKSTART, TINY)
        parts = build_parts(recipe, torch.device("cpu"))
        parts.updater.run_independent = runner  # type: ignore[assignment]
        batch = synthetic_batch(recipe, parts.model, torch.device("cpu"))
        for _ in range(2):
            parts.step(batch)
        return {f"{name}.{key}": value.clone() for name, net in parts.model.networks.items()
                for key, value in net.state_dict().items()}
    finally:
        torch.set_num_threads(own)


def test_updates_side_by_side_compute_the_bits_of_the_updates_in_turn() -> None:
    # one intra-op thread everywhere, so that only running side by side differs
    in_turn = _weights_after_two_steps(run_in_order, threads=1)
    side_by_side = _weights_after_two_steps(SideBySide(), threads=1)
    again = _weights_after_two_steps(SideBySide(), threads=1)
    assert in_turn.keys() == side_by_side.keys()
    for key in in_turn:
        assert torch.equal(in_turn[key], side_by_side[key]), key
        assert torch.equal(side_by_side[key], again[key]), key


def test_runner_returns_every_loss_in_order_on_two_threads_and_restores_the_thread_count() -> None:
    torch.set_num_threads(2)
    seen: dict[str, tuple[str, int]] = {}

    def run_one(group: str, forward):  # type: ignore[no-untyped-def]
        seen[group] = (threading.current_thread().name, torch.get_num_threads())
        return forward()

    losses = SideBySide()({"D": lambda: torch.tensor(1.0), "D2": lambda: torch.tensor(2.0)}, run_one)
    assert list(losses) == ["D", "D2"] and [float(v) for v in losses.values()] == [1.0, 2.0]
    assert seen["D"][0] != seen["D2"][0]  # two threads
    assert seen["D"][1] == seen["D2"][1] == 1  # sharing the two intra-op threads
    assert torch.get_num_threads() == 2


def test_an_error_in_one_update_surfaces_after_the_other_finished() -> None:
    finished = threading.Event()

    def run_one(group: str, forward):  # type: ignore[no-untyped-def]
        return forward()

    def slow() -> torch.Tensor:
        finished.wait(0.2)
        finished.set()
        return torch.tensor(0.0)

    def fails() -> torch.Tensor:
        raise RuntimeError("bad forward")

    with pytest.raises(RuntimeError, match="bad forward"):
        SideBySide()({"D": fails, "D2": slow}, run_one)
    assert finished.is_set()


def test_the_accelerator_sets_the_runner_on_the_cpu_with_two_threads_unless_told_not_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_allocator, "reuse_freed_memory", lambda: True)  # the process's for good otherwise
    torch.set_num_threads(2)
    recipe = prepare_recipe(QUICKSTART, TINY)
    for side_by_side, expected in ((True, SideBySide), (False, type(None))):
        accelerator = CpuKernels(cache=str(tmp_path / "routes.json"), side_by_side=side_by_side)
        model = build_parts(recipe, torch.device("cpu")).model
        accelerator.prepare(model, recipe, torch.device("cpu"))
        updater = Updater({}, "fp32", torch.device("cpu"))
        accelerator.prepare_updater(updater)
        assert isinstance(accelerator.runner, expected)
        assert updater.run_independent is (accelerator.runner or run_in_order)
        assert ("side by side" in (accelerator.notice or "")) is side_by_side


def test_no_side_by_side_under_data_parallelism(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_allocator, "reuse_freed_memory", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    torch.set_num_threads(2)
    recipe = prepare_recipe(QUICKSTART, TINY)
    accelerator = CpuKernels(cache=str(tmp_path / "routes.json"))
    accelerator.prepare(build_parts(recipe, torch.device("cpu")).model, recipe, torch.device("cpu"))
    updater = Updater({}, "fp32", torch.device("cpu"))
    accelerator.prepare_updater(updater)
    assert updater.run_independent is run_in_order  # every process issues D's and D2's collectives in one order
