"""spectral_norm: true on every discriminator and encoder: the bound, unchanged parameter counts, the
initialisation reaching the stored weights, exact resume, export, and official imports refused clearly."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import ganzoo
from fault_injection import SHAPES_PAIRED, tiny_recipe
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import CheckpointError, GanzooError, RecipeError
from ganzoo.layers import init_weights
from ganzoo.layers.spectral import has_spectral_norm, uses_spectral_norm
from ganzoo.recipe import resolve_recipe
from ganzoo.training.checkpoint import load_checkpoint, load_network_state
from ganzoo.training.trainer import Trainer, TrainingInterrupted
from helpers import assert_identical

DISCRIMINATORS = ["basic", "basic_128", "basic_256", "basic_128_multi", "basic_256_multi", "nlayer", "multiscale",
                  "pixel", "ensemble"]
ENCODERS = ["conv", "conv_128", "conv_256", "resnet", "resnet_128", "resnet_256"]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def spectral_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]


@pytest.mark.parametrize(("kind", "name"), [("discriminator", n) for n in DISCRIMINATORS]
                         + [("encoder", n) for n in ENCODERS])
def test_every_conv_and_linear_is_wrapped_and_parameter_counts_do_not_change(kind: str, name: str) -> None:
    with torch.device("meta"):
        plain = ganzoo.build(kind, name)
        normed = ganzoo.build(kind, name, spectral_norm=True)
    assert not uses_spectral_norm(plain)
    layers = spectral_layers(normed)
    assert layers and all(has_spectral_norm(m) for m in layers)
    assert n_params(normed) == n_params(plain)
    # the power-iteration vectors are buffers: a checkpoint carries them
    assert any(k.endswith("._u") for k in normed.state_dict())


def test_the_timm_encoder_takes_the_switch_too() -> None:
    pytest.importorskip("timm")
    with torch.device("meta"):
        net = ganzoo.build("encoder", "timm:resnet18", spectral_norm=True)
    assert all(has_spectral_norm(m) for m in spectral_layers(net))


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_largest_singular_value_is_one_with_any_norm(norm: str) -> None:
    net = ganzoo.build("discriminator", "nlayer", input_nc=3, ndf=8, n_layers=2, norm=norm, spectral_norm=True)
    init_weights(net, "normal", 0.02)
    net.train()
    x = torch.randn(2, 3, 32, 32)
    for _ in range(20):  # every training-mode forward refines the estimate
        net(x)
    for conv in spectral_layers(net):
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_the_recipe_initialisation_reaches_the_stored_weights() -> None:
    torch.manual_seed(0)
    net = ganzoo.build("discriminator", "nlayer", input_nc=3, ndf=32, n_layers=2, spectral_norm=True)
    init_weights(net, "normal", 0.02)
    for conv in spectral_layers(net):
        original = conv.parametrizations.weight.original
        assert original.std().item() == pytest.approx(0.02, rel=0.2)
        # the singular vectors were estimated afresh for the new weights (15 power iterations, as when
        # the wrapper is made): sigma is about right at once, in eval mode; left stale it is off by 10x-1000x
        net.eval()
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.1)


def test_the_switch_is_a_recipe_key_checked_as_a_bool(tmp_path: Path) -> None:
    recipe = tiny_recipe("pix2pix", tmp_path)
    recipe["model"]["networks"]["D"]["spectral_norm"] = "yes"
    with pytest.raises(RecipeError, match=r"model\.networks\.D\.spectral_norm"):
        resolve_recipe(recipe)


# -- training with it ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sn")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    return root / "paired"


def sn_recipe(data: Path, **train: Any) -> Any:
    recipe = tiny_recipe("pix2pix", data, **{"max_steps": 4, **train})
    recipe["model"]["networks"]["D"].update(spectral_norm=True, attention=[1])
    recipe["model"]["networks"]["G"]["attention"] = [2]
    return resolve_recipe(recipe)


def test_a_resumed_run_is_bit_identical(data: Path, tmp_path: Path) -> None:
    straight = Trainer(sn_recipe(data), tmp_path / "straight", show_progress=False)
    straight.run()
    interrupted = Trainer(sn_recipe(data), tmp_path / "resumed", show_progress=False)
    inner = interrupted.parts.step

    def stop_after_two(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = inner(batch)
        if interrupted.step == 1:
            interrupted.request_stop()
        return losses

    interrupted.parts.step = stop_after_two  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        interrupted.run()
    Trainer(sn_recipe(data), tmp_path / "resumed", resume=True, show_progress=False).run()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    assert any(".parametrizations.weight.original" in k for k in a["networks"]["D"])
    for part in ("networks", "optimizers", "schedulers", "rng"):
        assert_identical(a[part], b[part], part)
    # the attention gamma really trained (it is not stuck at its initial 0)
    assert a["networks"]["G"]["attention.2.gamma"].abs().item() > 0


def test_load_and_export_with_spectral_norm_and_attention(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(sn_recipe(data, max_steps=2), run, show_progress=False).run()
    model = ganzoo.load(run, device="cpu")
    assert uses_spectral_norm(model.networks["D"])
    from ganzoo.export import export_generator

    result = export_generator(run, "torchscript")
    assert result.parity_ok, result.parity_note


def test_a_checkpoint_without_spectral_norm_names_the_difference() -> None:
    plain = ganzoo.build("discriminator", "nlayer", input_nc=3, ndf=8, n_layers=2)
    normed = ganzoo.build("discriminator", "nlayer", input_nc=3, ndf=8, n_layers=2, spectral_norm=True)
    with pytest.raises(CheckpointError) as caught:
        load_network_state("D", normed, plain.state_dict(), "old.pt")
    assert "spectral_norm differs" in str(caught.value)


def test_official_weights_are_refused_for_a_spectral_norm_network() -> None:
    from ganzoo.official import convert_official_state, to_official

    plain = ganzoo.build("discriminator", "basic", input_nc=6, ndf=8)
    normed = ganzoo.build("discriminator", "basic", input_nc=6, ndf=8, spectral_norm=True)
    with pytest.raises(GanzooError) as caught:
        convert_official_state(normed, to_official(plain), name="D")
    text = str(caught.value)
    assert "network D has spectral_norm: true" in text and "spectral_norm: false" in text
    assert "leave D's file out" in text


def test_import_official_cli_refuses_with_one_clear_line(data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fault_injection import write_recipe
    from ganzoo.cli.app import main
    from ganzoo.inference import build_model
    from ganzoo.official import to_official

    recipe = tiny_recipe("pix2pix", data)
    plain = build_model(resolve_recipe(recipe), "cpu")
    torch.save(to_official(plain.networks["G"]), tmp_path / "latest_net_G.pth")
    torch.save(to_official(plain.networks["D"]), tmp_path / "latest_net_D.pth")
    recipe["model"]["networks"]["D"]["spectral_norm"] = True
    path = write_recipe(recipe, tmp_path / "sn.yaml")
    out = tmp_path / "imported.pt"
    result = CliRunner().invoke(main, ["import-official", str(tmp_path / "latest_net_G.pth"),
                                       str(tmp_path / "latest_net_D.pth"), "--recipe", str(path), "--out", str(out)])
    assert result.exit_code != 0 and "spectral_norm: true" in result.output and not out.exists()
    # without D's file, G imports and D keeps its initial (spectrally normalised) weights
    result = CliRunner().invoke(main, ["import-official", str(tmp_path / "latest_net_G.pth"), "--recipe", str(path),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert any(".parametrizations.weight.original" in k for k in load_checkpoint(out)["networks"]["D"])


def test_the_plugin_parametrization_is_torchs_own() -> None:
    net = ganzoo.build("discriminator", "pixel", input_nc=3, ndf=4, spectral_norm=True)
    conv = net.model[0]
    assert parametrize.is_parametrized(conv, "weight")
    assert type(conv.parametrizations.weight[0]).__module__ == "torch.nn.utils.parametrizations"
