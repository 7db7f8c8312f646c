"""``ganzoo info``: the resolved recipe and its networks, as text or JSON; errors exit with code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import ganzoo.cli.info_cmd  # noqa: F401  (attaches the command)
from ganzoo.cli.app import main
from ganzoo.recipe import prepare_recipe
from helpers import TOY_RECIPE, toy_params, write

pytestmark = pytest.mark.usefixtures("toy_registry")  # the toy model and parts of helpers.TOYS

ROOT = Path(__file__).parent.parent


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    return write(tmp_path / "toy.yaml", TOY_RECIPE)


def test_json_has_the_resolved_recipe_and_every_network(toy_file: Path) -> None:
    code, out = run("info", str(toy_file), "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"recipe", "networks"}
    assert data["recipe"] == prepare_recipe(toy_file).to_dict()
    assert data["networks"] == {
        "G": {"component": "toy_gen", "kind": "generator", "params": toy_params(1, 3, 8, 4)},
        "D": {"component": "toy_patch", "kind": "discriminator", "params": 4 * 8 * 16 + 8},
    }


def test_overrides_reach_the_recipe(toy_file: Path) -> None:
    code, out = run("info", str(toy_file), "--json", "--set", "model.networks.G.ngf=2", "--set", "model.nz=0")
    assert code == 0
    data = json.loads(out)
    assert data["recipe"]["model"]["networks"]["G"]["nz"] == 0
    assert data["networks"]["G"]["params"] == toy_params(1, 3, 2, 0)


def test_text_output_shows_yaml_and_a_parameter_table(toy_file: Path) -> None:
    code, out = run("info", str(toy_file))
    assert code == 0
    assert "name: toy" in out and "batch_size: 2" in out
    assert "toy_gen" in out and f"{toy_params(1, 3, 8, 4):,}" in out and "total" in out
    resolved_yaml = out[: out.index("networks of toy")]
    assert yaml.safe_load(resolved_yaml)["train"]["max_steps"] == 10


@pytest.mark.parametrize("args, words", [
    (["--set", "train.batch_size=0"], "train.batch_size: must be >= 1"),
    (["--set", "train.batch_sise=2"], "did you mean 'batch_size'?"),
    (["--set", "train.max_steps"], "is not KEY=VALUE"),
    (["--set", "model.networks.G.type=toy_ge"], "unknown generator 'toy_ge'"),
    (["--set", "data.crop_size=20"], "data.crop_size: 20 is not a multiple of 8, which model.networks.G (toy_gen) needs"),
    (["--set", "data.input_nc=3"], "data.input_nc: is 3, but model.networks.G"),
])
def test_recipe_errors_exit_2_with_the_key_path(toy_file: Path, args: list[str], words: str) -> None:
    code, out = run("info", str(toy_file), "--json", *args)
    assert code == 2
    assert words in " ".join(out.split())  # rich may wrap long lines
    assert "Traceback" not in out


def test_missing_and_broken_files_exit_2(tmp_path: Path) -> None:
    code, out = run("info", str(tmp_path / "nope.yaml"))
    assert code == 2 and "does not exist" in out
    broken = write(tmp_path / "broken.yaml", "model: [\n")
    code, out = run("info", str(broken))
    assert code == 2 and "YAML syntax error" in out


def test_the_official_bicyclegan_recipe() -> None:
    recipe = ROOT / "recipes" / "bicyclegan_shoes.yaml"
    if not recipe.exists():
        pytest.skip("recipes/bicyclegan_shoes.yaml is not shipped")
    code, out = run("info", str(recipe), "--json")
    assert code == 0
    networks = json.loads(out)["networks"]
    assert networks["G"] == {"component": "unet_256", "kind": "generator", "params": 54792579}
    assert set(networks) == {"G", "E", "D", "D2"}
    code, out = run("info", str(recipe), "--json", "--set", "model.use_same_D=true")
    assert code == 0 and set(json.loads(out)["networks"]) == {"G", "E", "D"}
