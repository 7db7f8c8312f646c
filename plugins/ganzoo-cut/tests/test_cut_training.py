"""CUT trains like a built-in model: the official update order, every network updated, exact resume,
EMA, ``ganzoo bench``, ``ganzoo sample`` and ``ganzoo export`` on a tiny run."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console

from ganzoo.bench import build_parts, synthetic_batch
from ganzoo.cli import main
from ganzoo.training.checkpoint import load_checkpoint
from ganzoo.training.trainer import Trainer, TrainingInterrupted, build_training


def tiny_batch(n: int = 2, seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, "B": torch.rand(n, 3, 32, 32, generator=g) * 2 - 1}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, net in model.networks.items() for k, v in net.state_dict().items()}


def assert_identical(a: Any, b: Any, where: str = "checkpoint") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("model", ["cut", "fastcut"])
def test_one_step_updates_D_then_G_and_F(tiny_recipe, model: str) -> None:  # type: ignore[no-untyped-def]
    recipe = tiny_recipe(*(["model.nce_idt=false", "model.flip_equivariance=true", "model.losses.nce=10"]
                           if model == "fastcut" else []), "train.batch_size=2", model=model)
    torch.manual_seed(0)
    parts = build_training(recipe, torch.device("cpu"), sample_batch=tiny_batch())
    assert set(parts.model.networks) == {"G", "D", "F"}  # F made by materialize, before the optimizers
    assert list(parts.optimizers) == ["D", "G", "F"]
    assert {id(p) for g in parts.optimizers["F"].param_groups for p in g["params"]} == \
        {id(p) for p in parts.model.networks["F"].parameters()}
    calls: list[Any] = []
    update = parts.updater.update
    parts.updater.update = lambda groups, loss: (calls.append(groups), update(groups, loss))[1]  # type: ignore[method-assign]
    before = snapshot(parts.model)
    losses = parts.step(tiny_batch())
    assert calls == ["D", ["G", "F"]]  # the official optimize_parameters: D, then G and F from one loss
    after = snapshot(parts.model)
    for net in ("G", "D", "F"):
        changed = [k for k in before if k.startswith(net + ".") and not torch.equal(before[k], after[k])]
        assert changed, f"{net} was not updated"
    expected = {"D_fake", "D_real", "D", "G_GAN", "NCE", "G_total"} | ({"NCE_Y"} if model == "cut" else set())
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    assert all(p.requires_grad for p in parts.model.networks["D"].parameters())  # D unfrozen again


def test_flip_equivariance_flips_what_G_sees(tiny_recipe) -> None:  # type: ignore[no-untyped-def]
    recipe = tiny_recipe("model.nce_idt=false", "model.flip_equivariance=true", model="fastcut")
    torch.manual_seed(0)
    parts = build_training(recipe, torch.device("cpu"), sample_batch=tiny_batch(1))
    batch = tiny_batch(1)
    outcomes = set()
    for seed in range(20):
        torch.manual_seed(seed)
        flipped = float(torch.rand(())) < 0.5
        seen: list[torch.Tensor] = []
        handle = parts.model.networks["G"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
        torch.manual_seed(seed)
        parts.step(batch)
        handle.remove()
        # G's calls: the translation, then per PatchNCE the output (queries) and the input (keys)
        first = torch.flip(batch["A"], [3]) if flipped else batch["A"]
        assert torch.equal(seen[0], first) and torch.equal(seen[2], batch["A"]), seed
        outcomes.add(flipped)
        if len(outcomes) == 2:
            break
    assert outcomes == {True, False}


@pytest.mark.parametrize("change, networks", [("model.netF=sample", {"G", "D"}), ("model.losses.nce=0", {"G", "D"}),
                                              ("model.losses.gan=0", {"G", "D", "F"})])
def test_variants_without_heads_or_terms(tiny_recipe, change: str, networks: set) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    parts = build_training(tiny_recipe(change), torch.device("cpu"), sample_batch=tiny_batch(1))
    assert set(parts.model.networks) == networks
    assert set(parts.optimizers) == {"D", "G"} | ({"F"} if "F" in networks else set())
    losses = parts.step(tiny_batch(1))
    assert ("NCE" in losses) == (change != "model.losses.nce=0")
    assert ("D" in losses) == (change != "model.losses.gan=0")
    assert all(torch.isfinite(v) for v in losses.values())


def test_bench_materializes_the_heads(tiny_recipe) -> None:  # type: ignore[no-untyped-def]
    parts = build_parts(tiny_recipe(), torch.device("cpu"))
    assert "F" in parts.model.networks and "F" in parts.optimizers
    batch = synthetic_batch(tiny_recipe(), parts.model, torch.device("cpu"))
    assert torch.isfinite(parts.step(batch)["G_total"])


def _trainer(recipe: Any, out: Path, resume: bool = False) -> Trainer:
    return Trainer(recipe, out, resume=resume, show_progress=False, console=Console(file=io.StringIO()))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_stopped_half_way_and_resumed_is_bit_identical_then_sample_and_export(
        tiny_recipe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = tiny_recipe("train.ema=0.9")
    torch.manual_seed(123)
    whole = _trainer(recipe, tmp_path / "whole").run()
    assert whole.step == 4
    expected = load_checkpoint(tmp_path / "whole" / "checkpoints" / "latest.pt")
    assert set(expected["networks"]) == {"G", "D", "F"} and set(expected["optimizers"]) == {"D", "G", "F"}
    assert set(expected["ema"]["networks"]) == {"G"}  # generators only, as for the built-in models

    half = _trainer(recipe, tmp_path / "half")
    step = half.parts.step
    counter = {"n": 0}

    def step_then_stop(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        counter["n"] += 1
        if counter["n"] == 2:
            half.request_stop()  # what Ctrl-C does: finish this step, write a checkpoint, stop
        return step(batch)

    half.parts.step = step_then_stop  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        half.run()
    assert load_checkpoint(tmp_path / "half" / "checkpoints" / "latest.pt")["step"] == 2
    torch.manual_seed(999)  # whatever the process did in between plays no part
    resumed = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "half"), "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert "at step 2/4" in resumed.output
    assert_identical(load_checkpoint(tmp_path / "half" / "checkpoints" / "latest.pt"), expected)

    # ganzoo sample and ganzoo export on the run (the EMA weights by default)
    inputs = Path(recipe.data.root) / "valA"
    sampled = CliRunner().invoke(main, ["sample", str(tmp_path / "whole"), "--input", str(inputs),
                                        "--out", str(tmp_path / "samples"), "--device", "cpu"])
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "samples" / "index.html").exists() and list((tmp_path / "samples").rglob("*.png"))
    exported = CliRunner().invoke(main, ["export", str(tmp_path / "whole"), "--out", str(tmp_path / "g.pt")],
                                  terminal_width=200)
    assert exported.exit_code == 0, exported.output
    assert "parity ok" in exported.output
    scripted = torch.jit.load(str(tmp_path / "g.pt"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    import ganzoo

    loaded = ganzoo.load(tmp_path / "whole", device="cpu")
    assert set(loaded.networks) == {"G", "D"}  # F is for training only
    torch.testing.assert_close(scripted(x), loaded.sample(x)[:, 0])
    logs = list((tmp_path / "whole" / "logs").glob("events.out.tfevents.*"))
    assert logs  # TensorBoard scalars
