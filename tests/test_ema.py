"""train.ema: a moving average of the generators' weights, checkpointed, resumed and used by ganzoo.load."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import ganzoo
from fault_injection import SHAPES_PAIRED, SHAPES_UNPAIRED, tiny_recipe
from ganzoo.cli.app import main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import RecipeError
from ganzoo.inference import build_model, load
from ganzoo.recipe import prepare_recipe, resolve_recipe
from ganzoo.training.checkpoint import load_checkpoint
from ganzoo.training.ema import GeneratorEMA, debiased_step, generator_names
from ganzoo.training.trainer import Trainer, TrainingInterrupted


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ema")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    return root / "paired"


def pix2pix_recipe(data: Path, **train: Any) -> Any:
    return resolve_recipe(tiny_recipe("pix2pix", data, **{"ema": 0.5, "max_steps": 4, **train}))


def weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_the_average_follows_the_ema_rule(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(pix2pix_recipe(data), tmp_path / "run", show_progress=False)
    G = trainer.model.networks["G"]
    after_each_step: list[dict[str, torch.Tensor]] = []
    inner = trainer.parts.step

    def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = inner(batch)
        after_each_step.append(weights(G))
        return losses

    trainer.parts.step = step  # type: ignore[method-assign]
    trainer.run()
    # Weights and batch-norm statistics (the floating-point entries; counters are not averaged maths).
    # Bias-corrected: the weights after step i count decay ** (n - i), normalised over the steps seen.
    floating = [k for k, v in after_each_step[0].items() if v.is_floating_point()]
    n, decay = len(after_each_step), 0.5
    coefficients = [decay ** (n - 1 - i) for i in range(n)]
    expected = {k: sum(c * w[k] for c, w in zip(coefficients, after_each_step)) / sum(coefficients) for k in floating}
    average = trainer.ema.state_dict()["networks"]["G"]
    assert [k for k in floating if not torch.allclose(average[k], expected[k], atol=1e-6)] == []
    assert not all(torch.equal(average[k], after_each_step[-1][k]) for k in floating)  # an average, not a copy


def test_checkpoints_keep_the_average_and_load_uses_it_unless_asked(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(pix2pix_recipe(data), run, show_progress=False)
    trainer.run()
    payload = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert payload["ema"]["decay"] == 0.5 and set(payload["ema"]["networks"]) == {"G"}
    averaged, trained = load(run, device="cpu"), load(run, device="cpu", ema=False)
    assert averaged.uses_weight_average and not trained.uses_weight_average
    # The package-level entry point takes the same switch.
    assert not ganzoo.load(run, device="cpu", ema=False).uses_weight_average
    for k, v in averaged.networks["G"].state_dict().items():
        assert torch.equal(v, payload["ema"]["networks"]["G"][k])
        assert torch.equal(trained.networks["G"].state_dict()[k], payload["networks"]["G"][k])
    # The discriminator is never averaged.
    for k, v in averaged.networks["D"].state_dict().items():
        assert torch.equal(v, payload["networks"]["D"][k])


def test_a_resumed_run_continues_the_average_exactly(data: Path, tmp_path: Path) -> None:
    straight = Trainer(pix2pix_recipe(data), tmp_path / "straight", show_progress=False)
    straight.run()
    interrupted = Trainer(pix2pix_recipe(data), tmp_path / "resumed", show_progress=False)
    inner = interrupted.parts.step

    def stop_after_two(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = inner(batch)
        if interrupted.step == 1:  # the second step is under way
            interrupted.request_stop()
        return losses

    interrupted.parts.step = stop_after_two  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        interrupted.run()
    Trainer(pix2pix_recipe(data), tmp_path / "resumed", resume=True, show_progress=False).run()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")["ema"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")["ema"]
    assert a["updates"] == b["updates"] == {"G": 4}
    for k, v in a["networks"]["G"].items():
        assert torch.equal(v, b["networks"]["G"][k]), k


def test_every_generator_is_averaged_and_nothing_else(tmp_path: Path) -> None:
    ensure_shapes(tmp_path / "unpaired", **SHAPES_UNPAIRED)
    cyclegan = build_model(resolve_recipe(tiny_recipe("cyclegan", tmp_path / "unpaired")), "cpu")
    assert generator_names(cyclegan) == ["G_A", "G_B"]
    assert set(GeneratorEMA(cyclegan, 0.9).averages) == {"G_A", "G_B"}


class _OneGenerator(torch.nn.Module):
    network_kinds = {"G": "generator"}

    def __init__(self) -> None:
        super().__init__()
        self.networks = torch.nn.ModuleDict({"G": torch.nn.Linear(1, 1, bias=False)})


def test_the_average_forgets_the_initial_weights_early() -> None:
    """0.999 after 20 updates: the plain EMA is still 98% the first weights; the corrected one is the mean."""
    assert debiased_step(0.999, 1) == 1.0 and debiased_step(0.999, 2) == pytest.approx(1 / 1.999)
    model = _OneGenerator()
    net = model.networks["G"]
    ema = GeneratorEMA(model, 0.999)
    for value in range(1, 21):
        net.weight.data.fill_(float(value))
        ema.update(model)
    coefficients = [0.999 ** (20 - i) for i in range(1, 21)]
    expected = sum(c * v for c, v in zip(coefficients, range(1, 21))) / sum(coefficients)
    average = ema.state_dict()["networks"]["G"]["weight"].item()
    assert average == pytest.approx(expected, rel=1e-5)
    assert 10 < average < 11  # the plain rule would give about 1.2
    assert ema.state_dict()["updates"] == {"G": 20}


def test_ema_off_by_default_and_bounded() -> None:
    assert prepare_recipe(Path(__file__).parents[1] / "recipes" / "quickstart_pix2pix.yaml").train.ema == 0.0
    with pytest.raises(RecipeError, match="train.ema"):
        prepare_recipe(Path(__file__).parents[1] / "recipes" / "quickstart_pix2pix.yaml", ["train.ema=1.0"])


def test_eval_cli_says_which_weights_it_scored(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(pix2pix_recipe(data, max_steps=2), run, show_progress=False).run()
    common = ["eval", str(run), "--metrics", "reconstruction", "--num-inputs", "1", "--num-z", "1", "--device", "cpu",
              "--json"]
    import json

    averaged = json.loads(CliRunner().invoke(main, common, catch_exceptions=False).output)
    trained = json.loads(CliRunner().invoke(main, [*common, "--raw-weights"], catch_exceptions=False).output)
    assert averaged["weight_average"] is True and trained["weight_average"] is False


def test_export_writes_the_average_unless_asked_for_the_trained_weights(data: Path, tmp_path: Path) -> None:
    from ganzoo.export import export_generator

    run = tmp_path / "run"
    Trainer(pix2pix_recipe(data, max_steps=3), run, show_progress=False).run()
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = {ema: load(run, device="cpu", ema=ema).networks["G"](x) for ema in (True, False)}
        assert (expected[True] - expected[False]).abs().max() > 1e-4  # the two weight sets differ
        for ema in (True, False):
            result = export_generator(run, "torchscript", out=tmp_path / f"G_{ema}.pt", ema=ema)
            assert torch.allclose(torch.jit.load(str(result.path))(x), expected[ema], rtol=1e-4, atol=1e-6)
