"""Guards around the trainer and the recipe (issue #28, items 5, 10 and 11).

The helpers (``ganzoo.training.guards``, ``ganzoo.contracts``) are tested here on their own; the
tests marked ``awaiting trainer integration`` hold once the lead calls them from
``recipe/resolve.py`` / ``models/networks.py`` (see /tmp/helperC_trainer_todo.md).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from fault_injection import SHAPES_PAIRED, tiny_recipe, write_recipe
from ganzoo.cli import main as ganzoo_main
from ganzoo.contracts import ensure_contract
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import ComponentError, GanzooError, RecipeError
from ganzoo.training.guards import check_memory, estimate_training_bytes, nonfinite_buffers


def invoke(args: list[str]) -> Any:
    return CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, args)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guards") / "paired"
    ensure_shapes(root, **SHAPES_PAIRED)
    return root


# -- item 5: non-finite buffers ------------------------------------------------------------------
def test_nonfinite_buffers_names_the_buffer() -> None:
    nets = {"D": nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "G": nn.Sequential(nn.BatchNorm2d(2))}
    assert nonfinite_buffers(nets) == []
    nets["D"][1].running_var[2] = math.inf
    nets["G"][0].running_mean[0] = math.nan
    assert nonfinite_buffers(nets) == ["D.1.running_var", "G.0.running_mean"]


def test_a_huge_learning_rate_that_keeps_losses_finite_still_stops_on_the_running_statistics(
        data_root: Path, tmp_path: Path) -> None:
    """pix2pix at lr=1e10: the losses stay finite, batch norm's running_var goes to inf. The run must
    stop (exit 3) before any checkpoint or the weight average holds an inf."""
    raw = tiny_recipe("pix2pix", data_root, max_steps=6, ema=0.9)
    raw["train"]["optimizer"]["lr"] = 1e10
    raw["log"] = {"every": 1, "samples_every": 100, "checkpoint_every": 1, "keep_last": 10}
    run = tmp_path / "run"
    result = invoke(["train", str(write_recipe(raw, tmp_path / "r.yaml")), "--out", str(run), "--no-progress"])
    assert result.exit_code == 3, result.output
    assert "running statistic" in result.output and "non-finite" in result.output
    assert ".running_var" in result.output or ".running_mean" in result.output  # the buffer is named
    for path in sorted((run / "checkpoints").glob("*.pt")):
        payload = torch.load(path, weights_only=True)
        tensors = [v for sd in payload["networks"].values() for v in sd.values()]
        tensors += [v for sd in (payload.get("ema") or {}).get("networks", {}).values() for v in sd.values()]
        assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()), path.name


# -- item 10: components that leave out an attribute the core reads ------------------------------
class NoChannels(nn.Module):
    """A discriminator that never says its input_nc (the first conv does)."""

    def __init__(self, ndf: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(4, ndf, 4, 2, 1), nn.Conv2d(ndf, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NoConvolutions(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))


def test_missing_input_nc_is_inferred_from_the_first_convolution() -> None:
    net = ensure_contract("discriminator", "no_channels", NoChannels())
    assert net.input_nc == 4 and net.size_multiple == 1
    generator = ensure_contract("generator", "g", nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 3, 3)))
    assert (generator.input_nc, generator.output_nc, generator.nz) == (1, 3, 0)


def test_what_cannot_be_inferred_is_one_line_naming_component_attribute_and_contract() -> None:
    with pytest.raises(ComponentError) as info:
        ensure_contract("discriminator", "plain", NoConvolutions(), where="model.networks.D")
    message = str(info.value)
    assert "model.networks.D" in message and "'plain'" in message and "'input_nc'" in message
    assert "docs/architecture.md" in message and "\n" not in info.value.message
    with pytest.raises(ComponentError, match="'nz'"):
        ensure_contract("encoder", "e", NoChannels())
    with pytest.raises(ComponentError, match="not a torch.nn.Module"):
        ensure_contract("generator", "f", lambda x: x)
    bad = NoChannels()
    bad.input_nc = "4"
    with pytest.raises(ComponentError, match="'input_nc' is '4'"):
        ensure_contract("discriminator", "bad", bad)


@pytest.mark.parametrize("component", ["no_channels", "no_convolutions"])
def test_a_plugin_component_without_input_nc_never_crashes_resolution(data_root: Path, component: str,
                                                                     temp_register: Any) -> None:
    from ganzoo.recipe import resolve_recipe

    temp_register("discriminator", "no_channels", NoChannels)
    temp_register("discriminator", "no_convolutions", NoConvolutions)
    raw = tiny_recipe("pix2pix", data_root)
    raw["model"]["networks"]["D"] = {"type": component}
    if component == "no_channels":
        assert resolve_recipe(raw).model.networks["D"]["type"] == "no_channels"
    else:
        with pytest.raises(RecipeError, match=r"model\.networks\.D.*'input_nc'.*docs/architecture\.md"):
            resolve_recipe(raw)


# -- item 11: what a recipe may ask for ------------------------------------------------------------
def test_check_memory_names_the_network_that_does_not_fit() -> None:
    with torch.device("meta"):
        nets = {"G": nn.Conv2d(1000, 1000, 3), "D": nn.Conv2d(4, 4, 3)}
    parts = estimate_training_bytes(nets, batch_size=1, image_side=32)
    assert parts["G"] == (1000 * 1000 * 9 + 1000) * 16
    check_memory(nets, batch_size=1, image_side=32, available=1 << 40)
    with pytest.raises(RecipeError, match=r"model\.networks\.G: needs at least .* GiB .*9,001,000 parameters"):
        check_memory(nets, batch_size=1, image_side=32, available=1 << 20)


def test_a_width_that_passes_every_bound_but_needs_terabytes_is_refused_before_allocating(data_root: Path,
                                                                                         tmp_path: Path) -> None:
    from ganzoo.recipe import resolve_recipe
    from ganzoo.training.trainer import Trainer

    raw = tiny_recipe("pix2pix", data_root)
    raw["model"]["networks"]["G"]["ngf"] = 1_000_000
    recipe = resolve_recipe(raw)  # a valid recipe for some machine; the Trainer checks this one
    with pytest.raises(RecipeError, match=r"model\.networks\.G.*GiB"):
        Trainer(recipe, tmp_path / "run", show_progress=False)
    assert not list((tmp_path / "run").glob("checkpoints/*"))


def test_recipe_values_that_used_to_crash_are_recipe_errors(data_root: Path, tmp_path: Path) -> None:
    for key, value, expected in (("train.seed", 2**63, "train.seed"), ("data.load_size", 100000, "data.load_size")):
        raw = tiny_recipe("pix2pix", data_root)
        section, name = key.split(".")
        raw[section][name] = value
        result = invoke(["info", str(write_recipe(raw, tmp_path / "r.yaml"))])
        assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_hundreds_of_nested_brackets_are_one_line(tmp_path: Path) -> None:
    recipe = tmp_path / "deep.yaml"
    recipe.write_text("name: x\nmodel: " + "[" * 800 + "]" * 800 + "\n")
    result = invoke(["info", str(recipe)])
    assert result.exit_code == 2 and len(result.output.splitlines()) <= 3, result.output[:500]


def test_an_alias_bomb_in_an_untyped_argument_gives_a_short_message(data_root: Path, tmp_path: Path,
                                                                   temp_register: Any) -> None:
    class Picky(nn.Module):
        def __init__(self, input_nc: int = 4, extra=None) -> None:  # noqa: ANN001  (untyped on purpose)
            super().__init__()
            raise ValueError(f"cannot use {extra}")

    temp_register("discriminator", "picky", Picky)
    # extra: [&l0 [9 strings], &l1 [*l0 x 9], ..., &l5 [*l4 x 9]]: 9**6 strings (5 MB) once expanded
    levels = ["&l0 [" + ", ".join(["xxxxxxxx"] * 9) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 6)]
    raw = tiny_recipe("pix2pix", data_root)
    raw["model"]["networks"]["D"] = {"type": "picky", "input_nc": 4, "extra": "ALIAS"}
    import yaml

    body = yaml.safe_dump(raw, sort_keys=False, width=10_000).replace("extra: ALIAS", f"extra: [{', '.join(levels)}]")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(body)
    result = invoke(["info", str(recipe)])
    assert result.exit_code == 2 and "picky" in result.output and "cannot use" in result.output, result.output[:3000]
    assert len(result.output) < 5000, len(result.output)


def test_every_ganzoo_error_is_capped() -> None:
    error = GanzooError("x" * 10_000_000, hint="y" * 100_000)
    assert len(error.message) < 2100 and len(error.hint or "") < 2100
    assert "characters cut" in error.message
