"""The registry: registering, presets, prefixes, the errors a user sees, and ``ganzoo list``."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch.nn as nn
from click.testing import CliRunner

import ganzoo
from ganzoo.cli import main
from ganzoo.errors import ComponentError
from ganzoo.registry import KINDS, get_component, register, register_preset, registering_from, registry

TempRegister = Callable[..., Any]


class Scaler(nn.Module):
    """Multiplies its input by a constant (a throwaway test component).

    Second docstring line, not shown by ``ganzoo list``.
    """

    def __init__(self, factor: float = 2.0, width: int = 4, bias: bool = False) -> None:
        super().__init__()
        self.factor, self.width, self.bias = factor, width, bias


def _needs_size(size: int, scale: float = 1.0) -> dict[str, Any]:
    """Returns its arguments (a throwaway component with a required argument)."""
    return {"size": size, "scale": scale}


def _by_model_name(model_name: str, depth: int = 1) -> dict[str, Any]:
    """Returns its arguments (a throwaway prefix component)."""
    return {"model_name": model_name, "depth": depth}


def test_register_decorator_builds_by_name_and_describes_from_docstring() -> None:
    try:
        returned = register("activation", "test_scaler")(Scaler)
        assert returned is Scaler, "the decorator must hand the class back unchanged"
        built = ganzoo.build("activation", "test_scaler", factor=3.0)
        assert isinstance(built, Scaler) and built.factor == 3.0
        entry = get_component("activation", "test_scaler")
        assert entry.description == "Multiplies its input by a constant (a throwaway test component)."
        assert entry.source != "ganzoo"  # registered from outside the package
        assert entry.defaults() == {"factor": 2.0, "width": 4, "bias": False}
        assert "test_scaler" in ganzoo.list_components("activation")["activation"]
        assert "test_scaler" in registry("activation")
    finally:
        registry("activation").remove("test_scaler")
    assert "test_scaler" not in registry("activation")


def test_registering_from_names_the_plugin(temp_register: TempRegister) -> None:
    with registering_from("my-plugin"):
        temp_register("activation", "test_scaler", Scaler)
    assert get_component("activation", "test_scaler").source == "my-plugin"


def test_duplicate_name_is_an_error_unless_override(temp_register: TempRegister) -> None:
    temp_register("activation", "test_scaler", Scaler)
    with pytest.raises(ComponentError, match="already registered") as info:
        temp_register("activation", "test_scaler", _needs_size)
    assert "override=True" in str(info.value)
    assert get_component("activation", "test_scaler").factory is Scaler  # the first one is kept

    temp_register("activation", "test_scaler", _needs_size, override=True)
    assert ganzoo.build("activation", "test_scaler", size=3) == {"size": 3, "scale": 1.0}


def test_builtin_names_are_protected() -> None:
    with pytest.raises(ComponentError, match="'unet_256' is already registered"):
        register("generator", "unet_256")(Scaler)
    assert get_component("generator", "unet_256").factory is not Scaler


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ComponentError) as info:
        ganzoo.build("generator", "unet_265")
    error = info.value
    assert "unknown generator 'unet_265'" in error.message
    assert "unet_256" in error.message  # the registered names are listed
    assert error.hint is not None and "'unet_256'" in error.hint
    assert error.exit_code == 2


def test_unknown_name_without_close_match_has_no_hint() -> None:
    with pytest.raises(ComponentError) as info:
        get_component("generator", "qqqqqqqqqq")
    assert info.value.hint is None


def test_bad_keyword_names_the_argument_and_suggests_the_close_one() -> None:
    with pytest.raises(ComponentError) as info:
        ganzoo.build("generator", "unet_256", nfg=8)
    error = info.value
    assert "'nfg'" in error.message and "unet_256" in error.message
    assert "ngf" in error.message  # the accepted arguments are listed
    assert error.hint is not None and "'ngf'" in error.hint


def test_missing_required_argument(temp_register: TempRegister) -> None:
    temp_register("metric", "test_needs_size", _needs_size)
    with pytest.raises(ComponentError, match="missing required argument.*size"):
        ganzoo.build("metric", "test_needs_size", scale=2.0)
    assert get_component("metric", "test_needs_size").required() == ["size"]


@pytest.mark.parametrize("call", [
    lambda: ganzoo.build("generatr", "unet_256"),
    lambda: get_component("generatr", "unet_256"),
    lambda: ganzoo.list_components("generatr"),
    lambda: register("generatr", "x"),
])
def test_unknown_kind(call: Callable[[], Any]) -> None:
    with pytest.raises(ComponentError, match="unknown component kind 'generatr'") as info:
        call()
    assert info.value.hint is not None and "'generator'" in info.value.hint


def test_list_components_covers_every_kind() -> None:
    listed = ganzoo.list_components()
    assert list(listed) == list(KINDS)
    assert {"unet_128", "unet_256"} <= set(listed["generator"])
    assert listed["generator"] == sorted(listed["generator"])


def test_builtin_preset_hides_its_fixed_argument() -> None:
    entry = get_component("generator", "unet_256")
    assert "num_downs" in get_component("generator", "unet").signature().parameters
    assert "num_downs" not in entry.signature().parameters
    with pytest.raises(ComponentError, match="'num_downs'"):
        ganzoo.build("generator", "unet_256", num_downs=7)


def test_register_preset_fixes_and_changes_defaults(temp_register: TempRegister) -> None:
    temp_register("activation", "test_scaler", Scaler)
    try:
        register_preset("activation", "test_scaler_wide", Scaler, description="A wide scaler.",
                        fixed={"width": 64}, defaults={"factor": 5.0})
        entry = get_component("activation", "test_scaler_wide")
        assert entry.description == "A wide scaler."
        assert entry.defaults() == {"factor": 5.0, "bias": False}  # width is fixed, hence hidden
        built = ganzoo.build("activation", "test_scaler_wide")
        assert (built.width, built.factor) == (64, 5.0)
        assert ganzoo.build("activation", "test_scaler_wide", factor=1.5).factor == 1.5
        with pytest.raises(ComponentError, match="has no argument 'width'"):
            ganzoo.build("activation", "test_scaler_wide", width=8)
    finally:
        registry("activation").remove("test_scaler_wide")


def test_prefix_component_receives_the_rest_of_the_name(temp_register: TempRegister) -> None:
    temp_register("metric", "test_zoo", _by_model_name, prefix=True)
    assert ganzoo.build("metric", "test_zoo:tiny_net", depth=3) == {"model_name": "tiny_net", "depth": 3}
    assert ganzoo.build("metric", "test_zoo:a:b") == {"model_name": "a:b", "depth": 1}
    assert "test_zoo:<model_name>" in ganzoo.list_components("metric")["metric"]
    with pytest.raises(ComponentError) as info:
        ganzoo.build("metric", "test_zo:tiny_net")
    assert info.value.hint is not None and "test_zoo:<name>" in info.value.hint


def test_prefix_name_alone_is_not_a_component(temp_register: TempRegister) -> None:
    temp_register("metric", "test_zoo", _by_model_name, prefix=True)
    with pytest.raises(ComponentError, match="unknown metric 'test_zoo'"):
        ganzoo.build("metric", "test_zoo")


def test_timm_prefix_encoder() -> None:
    encoder = ganzoo.build("encoder", "timm:test_resnet", nz=4)
    assert encoder.nz == 4
    with pytest.raises(ComponentError, match="no_such_model"):
        ganzoo.build("encoder", "timm:no_such_model")


def test_cli_list_shows_every_kind_with_descriptions() -> None:
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    for text in ("unet_256", "lsgan", "linear", "instance", "timm:<model_name>"):
        assert text in result.output
    assert "ganzoo" in result.output  # the "from" column


def test_cli_list_one_kind() -> None:
    result = CliRunner().invoke(main, ["list", "gan_loss"])
    assert result.exit_code == 0, result.output
    assert "hinge" in result.output and "unet_256" not in result.output


def test_cli_list_json() -> None:
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ganzoo.list_components()


def test_cli_list_json_one_kind() -> None:
    result = CliRunner().invoke(main, ["list", "scheduler", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert list(listed) == ["scheduler"]
    assert {"cosine", "linear", "plateau", "step"} <= set(listed["scheduler"])


def test_cli_list_unknown_kind_exits_2_with_a_message() -> None:
    result = CliRunner().invoke(main, ["list", "generatr"])
    assert result.exit_code == 2
    assert "unknown component kind 'generatr'" in result.output
    assert "did you mean 'generator'" in result.output
    assert "Traceback" not in result.output
