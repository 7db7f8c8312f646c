"""Recipes: loading, ``base:`` inheritance, ``--set`` overrides, defaults, validation, resolution.

The tests use a small fake model and fake networks registered under ``toy_*`` names, so they do
not depend on the real pix2pix/CycleGAN/BicycleGAN classes.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ganzoo.errors import RecipeError
from ganzoo.recipe import (
    apply_overrides,
    dump_recipe,
    load_recipe,
    network_summary,
    prepare_recipe,
    resolve_recipe,
)
from ganzoo.recipe import schema
from ganzoo.recipe.schema import Recipe
from helpers import TOY_RECIPE, toy_params, write


pytestmark = pytest.mark.usefixtures("toy_registry")  # the toy model and parts of helpers.TOYS


def toy_raw() -> dict[str, Any]:
    return yaml.safe_load(TOY_RECIPE)


@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    return write(tmp_path / "toy.yaml", TOY_RECIPE)


# --------------------------------------------------------------------------------------------- loading

def test_load_reads_a_mapping_in_file_order(toy_file: Path) -> None:
    raw = load_recipe(toy_file)
    assert list(raw) == ["name", "model", "data", "train"]
    assert raw["model"]["networks"]["G"]["ngf"] == 8


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="nope.yaml does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "name: x\nmodel:\n  type: [unclosed\ndata: {}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "bad.yaml:4:" in str(info.value) and "YAML syntax error" in str(info.value)


@pytest.mark.parametrize("text, words", [("- a\n- b\n", "not a list"), ("", "empty"), ("42\n", "not a int")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path / "r.yaml", text)
    with pytest.raises(RecipeError, match="mapping") as info:
        load_recipe(path)
    assert words.split()[-1] in str(info.value)


def test_a_key_written_twice_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", "train:\n  batch_size: 1\n  batch_size: 2\n")
    with pytest.raises(RecipeError, match=r"r.yaml:3:.*'batch_size' appears twice \(first on line 2\)"):
        load_recipe(path)


# ------------------------------------------------------------------------------------------ inheritance

def test_child_wins_and_nested_mappings_merge(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", """\
        model:
          type: toy_gan
          networks: {G: {type: toy_gen, ngf: 8, input_nc: 1}, D: {type: toy_patch}}
        train: {batch_size: 4, optimizer: {lr: 0.1, betas: [0.1, 0.2]}}
        """)
    child = write(tmp_path / "child.yaml", """\
        base: base.yaml
        model:
          networks: {G: {ngf: 16}}
        train: {optimizer: {betas: [0.9]}}
        """)
    raw = load_recipe(child)
    assert "base" not in raw
    assert raw["model"]["type"] == "toy_gan"
    assert raw["model"]["networks"]["G"] == {"type": "toy_gen", "ngf": 16, "input_nc": 1}
    assert raw["model"]["networks"]["D"] == {"type": "toy_patch"}
    assert raw["train"] == {"batch_size": 4, "optimizer": {"lr": 0.1, "betas": [0.9]}}  # lists are replaced


def test_list_of_bases_merges_in_order_then_child(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", "train: {batch_size: 1, seed: 1, epochs: 1}\n")
    write(tmp_path / "two.yaml", "train: {batch_size: 2, seed: 2}\n")
    child = write(tmp_path / "child.yaml", "base: [one.yaml, two.yaml]\ntrain: {batch_size: 3}\n")
    assert load_recipe(child)["train"] == {"batch_size": 3, "seed": 2, "epochs": 1}


def test_base_paths_are_relative_to_the_file_naming_them(tmp_path: Path) -> None:
    write(tmp_path / "common" / "root.yaml", "name: root\ntrain: {seed: 7}\n")
    write(tmp_path / "common" / "mid.yaml", "base: root.yaml\nname: mid\n")
    child = write(tmp_path / "exp" / "leaf.yaml", "base: ../common/mid.yaml\n")
    assert load_recipe(child) == {"name": "mid", "train": {"seed": 7}}


def test_diamond_inheritance_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "train: {seed: 1}\n")
    write(tmp_path / "a.yaml", "base: root.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "base: root.yaml\nlog: {every: 5}\n")
    child = write(tmp_path / "c.yaml", "base: [a.yaml, b.yaml]\n")
    assert load_recipe(child) == {"train": {"seed": 1}, "name": "a", "log": {"every": 5}}


def test_base_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "a.yaml")
    assert info.value.key == "base"
    assert "cycle" in str(info.value)
    assert f"{tmp_path}/a.yaml -> {tmp_path}/b.yaml -> {tmp_path}/a.yaml" in str(info.value)


def test_a_recipe_naming_itself_as_base_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(path)


def test_missing_base_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: gone.yaml\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "a.yaml")
    text = str(info.value)
    assert info.value.key == "base"
    assert "gone.yaml does not exist" in text and "a.yaml -> " in text and "b.yaml -> " in text


@pytest.mark.parametrize("value", ["3", "[1, 2]", "{a: b}", "['']"])
def test_base_must_name_files(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "r.yaml", f"base: {value}\n")
    with pytest.raises(RecipeError, match="base: expected a file name"):
        load_recipe(path)


# ------------------------------------------------------------------------------------------- overrides

@pytest.mark.parametrize("text, path, expected", [
    ("train.max_steps=20", ("train", "max_steps"), 20),
    ("train.optimizer.lr=1e-3", ("train", "optimizer", "lr"), 1e-3),
    ("data.flip=false", ("data", "flip"), False),
    ("data.max_items=null", ("data", "max_items"), None),
    ("data.max_items=", ("data", "max_items"), None),
    ("train.optimizer.betas=[0.0, 0.99]", ("train", "optimizer", "betas"), [0.0, 0.99]),
    ("name=run 1", ("name",), "run 1"),
    ("name='42'", ("name",), "42"),
    ("model.nz=2", ("model", "nz"), 2),
    ("model.networks.G.ngf=16", ("model", "networks", "G", "ngf"), 16),
    ("model.networks.G.norm=instance", ("model", "networks", "G", "norm"), "instance"),  # a new network arg
    ("model.losses.gan=0", ("model", "losses", "gan"), 0),
    ("data.shapes.size=32", ("data", "shapes", "size"), 32),  # creates the mapping
])
def test_overrides_parse_values_as_yaml(toy_file: Path, text: str, path: tuple[str, ...], expected: Any) -> None:
    node: Any = load_recipe(toy_file, [text])
    for part in path:
        node = node[part]
    assert node == expected and type(node) is type(expected)


def test_override_can_add_a_network_of_a_known_name(toy_file: Path) -> None:
    raw = load_recipe(toy_file, ["model.use_E=true", "model.networks.E.type=toy_enc", "model.networks.E.nef=4"])
    assert raw["model"]["networks"]["E"] == {"type": "toy_enc", "nef": 4}
    assert resolve_recipe(raw).model.networks["E"]["nz"] == 4  # derived from model.nz


def test_override_with_a_mapping_replaces_the_whole_value(toy_file: Path) -> None:
    raw = load_recipe(toy_file, ["model.networks.G={type: toy_gen, ngf: 2}"])
    assert raw["model"]["networks"]["G"] == {"type": "toy_gen", "ngf": 2}


def test_later_overrides_win(toy_file: Path) -> None:
    assert load_recipe(toy_file, ["train.seed=1", "train.seed=2"])["train"]["seed"] == 2


@pytest.mark.parametrize("text, key, hint", [
    ("train.batch_sise=2", "train.batch_sise", "batch_size"),
    ("trian.seed=1", "trian", "train"),
    ("model.nzz=3", "model.nzz", "nz"),
    ("model.networks.G.ngff=3", "model.networks.G.ngff", "ngf"),
    ("model.networks.GG.ngf=3", "model.networks.GG", "G"),
    ("model.losses.l2=1", "model.losses.l2", "l1"),
    ("train.optimizer.lrr=1", "train.optimizer.lrr", "lr"),
    ("data.shapes.sizes=1", "data.shapes.sizes", "size"),
])
def test_override_cannot_invent_keys(toy_file: Path, text: str, key: str, hint: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(toy_file, [text])
    assert info.value.key == key
    assert "unknown key" in str(info.value) and repr(hint) in (info.value.hint or "")


@pytest.mark.parametrize("text, match", [
    ("train.max_steps", "is not KEY=VALUE"),
    ("=3", "is not KEY=VALUE"),
    ("train..seed=1", "dotted key path"),
    ("train.seed.x=1", "train.seed: is not a mapping"),
    ("model.networks.G.type.x=1", "is 'toy_gen', not a mapping"),
    ("base=other.yaml", "cannot be overridden"),
    ("name=[unclosed", "YAML syntax error"),
])
def test_malformed_overrides(toy_file: Path, text: str, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        load_recipe(toy_file, [text])


# ------------------------------------------------------------------------------------------ resolution

def test_defaults_are_filled_everywhere() -> None:
    recipe = resolve_recipe(toy_raw())
    assert isinstance(recipe, Recipe)
    assert [f.name for f in dataclasses.fields(recipe)] == ["name", "plugins", "model", "data", "train", "log"]
    assert list(recipe.to_dict()) == ["name", "plugins", "model", "data", "train", "log"]
    model = recipe.model
    # the plain form keeps the recipe file's shape: general keys first, the model's options beside them
    assert list(model.to_dict())[:5] == ["type", "networks", "init", "gan_loss", "losses"]
    options = model.options
    assert options.nz == 4 and options.use_E is False and options.mode == "a" and options.lambda_x == 1.0
    assert model.to_dict()["nz"] == 4 and model.to_dict()["lambda_x"] == 1.0
    assert model.losses == {"gan": 1.0, "l1": 5.0} and isinstance(model.losses["l1"], float)
    assert model.init == {"type": "xavier", "gain": 0.02}  # the model's recipe_defaults
    assert model.gan_loss == "vanilla"  # the model's default_gan_loss
    # constructor defaults in signature order, the model's derived nz, and the given values
    assert model.networks["G"] == {"type": "toy_gen", "input_nc": 1, "output_nc": 3, "ngf": 8, "nz": 4,
                                   "num_downs": 3, "norm": "batch"}
    assert list(model.networks["G"]) == ["type", "input_nc", "output_nc", "ngf", "nz", "num_downs", "norm"]
    assert model.networks["D"] == {"type": "toy_patch", "input_nc": 4, "ndf": 8, "n_layers": 2}
    data = recipe.data
    assert data.input_nc == 1 and data.output_nc == 3  # taken from G
    assert data.dataset == "aligned" and data.direction == "AtoB" and data.flip is True
    assert data.shapes is None and data.workers == 2 and data.max_items is None
    train = recipe.train
    assert train.to_dict()["optimizer"] == {"type": "adam", "lr": 0.0002, "betas": [0.5, 0.999], "weight_decay": 0.0}
    assert train.optimizer["betas"] == (0.5, 0.999)  # frozen: lists are tuples
    assert train.scheduler["type"] == "linear"
    assert train.epochs == 100 and train.epochs_decay == 100 and train.device == "auto"
    assert train.precision == "fp32" and train.nonfinite == "stop" and train.compile is False
    assert train.deterministic is False and train.accelerators == ()
    log = recipe.log.to_dict()
    assert {k: log[k] for k in ("every", "samples_every", "checkpoint_every", "keep_last", "final_eval")} == \
        {"every": 100, "samples_every": 500, "checkpoint_every": 1000, "keep_last": 3, "final_eval": False}
    assert log == {name: k.default for name, k in schema.LOG.items()}  # every log key at its declared default
    assert recipe.plugins == ()


def test_a_resolved_recipe_is_read_only() -> None:
    recipe = resolve_recipe(toy_raw())
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.train.seed = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.model.options.nz = 3  # type: ignore[misc]
    assert isinstance(recipe.model.networks, MappingProxyType)
    with pytest.raises(TypeError):
        recipe.model.networks["G"]["ngf"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        recipe.train.optimizer["lr"] = 1.0  # type: ignore[index]
    # changed copies are made explicitly, and resolve (and check) like any recipe
    changed = recipe.replace(train=dataclasses.replace(recipe.train, seed=3))
    assert changed.train.seed == 3 and recipe.train.seed == 0
    assert resolve_recipe(changed.to_dict()) == changed


def test_resolution_is_idempotent_and_does_not_touch_the_input() -> None:
    raw = toy_raw()
    before = copy.deepcopy(raw)
    once = resolve_recipe(raw)
    assert raw == before
    assert resolve_recipe(once) is once
    plain = once.to_dict()
    assert resolve_recipe(plain) == once
    assert resolve_recipe(plain).to_dict() == plain


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path / "my_run.yaml", TOY_RECIPE.replace("name: toy\n", ""))
    assert prepare_recipe(path).name == "my_run"


def test_shapes_section_gets_its_defaults() -> None:
    raw = toy_raw()
    raw["data"]["shapes"] = {"size": 32}
    shapes = resolve_recipe(raw).data.shapes
    assert shapes.size == 32 and set(shapes.to_dict()) == {"flavour", "size", "n_train", "n_val", "n_test", "seed"}
    assert shapes.flavour == "shapes-multimodal" and shapes.n_train == 2000


def test_component_shorthand_and_arguments() -> None:
    raw = toy_raw()
    raw["model"]["init"] = "normal"
    raw["model"]["networks"]["D"] = "toy_patch"
    raw["train"]["scheduler"] = {"type": "toy_step", "gamma": 1}
    recipe = resolve_recipe(raw)
    assert recipe.model.init == {"type": "normal", "gain": 0.02}
    assert recipe.model.networks["D"]["type"] == "toy_patch"
    assert recipe.train.scheduler == {"type": "toy_step", "step_size": 10, "gamma": 1.0, "warmup_steps": 0}


@pytest.mark.parametrize("optimizer, expected", [
    ({"type": "adamw"}, {"type": "adamw", "lr": 0.0002, "betas": [0.5, 0.999], "weight_decay": 0.01}),
    ({"type": "sgd", "momentum": 0.9}, {"type": "sgd", "lr": 0.0002, "weight_decay": 0.0, "momentum": 0.9}),
    ({"lr": 0.1, "eps": 1e-6}, {"type": "adam", "lr": 0.1, "betas": [0.5, 0.999], "weight_decay": 0.0, "eps": 1e-6}),
    ("rmsprop", {"type": "rmsprop", "lr": 0.0002, "weight_decay": 0.0}),
])
def test_optimizer_keys_follow_the_torch_optimizer(optimizer: Any, expected: dict[str, Any]) -> None:
    raw = toy_raw()
    raw["train"]["optimizer"] = optimizer
    assert resolve_recipe(raw).train.to_dict()["optimizer"] == expected


@pytest.mark.parametrize("optimizer, key, words", [
    ({"type": "sgd", "betas": [0.5, 0.9]}, "train.optimizer.betas", "unknown argument"),
    ({"type": "adam", "momentom": 0.9}, "train.optimizer.momentom", "unknown argument"),
    ({"type": "lion"}, "train.optimizer.type", "is not one of"),
    ({"type": "adam", "eps": -1.0}, "train.optimizer", "torch.optim.Adam refuses these settings"),
    ({"type": "sgd", "nesterov": True}, "train.optimizer", "refuses"),
])
def test_optimizer_errors(optimizer: dict[str, Any], key: str, words: str) -> None:
    raw = toy_raw()
    raw["train"]["optimizer"] = optimizer
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.key == key and words in str(info.value)


def test_override_can_switch_the_optimizer_wholesale(toy_file: Path) -> None:
    recipe = prepare_recipe(toy_file, ["train.optimizer={type: sgd, momentum: 0.5}", "train.optimizer.nesterov=true"])
    assert recipe.train.optimizer["nesterov"] is True


def test_unused_networks_are_checked_but_not_kept() -> None:
    raw = toy_raw()
    raw["model"]["networks"]["E"] = {"type": "toy_enc"}
    assert "E" not in resolve_recipe(raw).model.networks
    raw["model"]["networks"]["E"] = {"type": "toy_enc", "nef": "wide"}
    with pytest.raises(RecipeError, match="model.networks.E.nef"):
        resolve_recipe(raw)


def test_generated_size_is_checked_when_preprocess_is_none() -> None:
    raw = toy_raw()
    raw["data"].update(preprocess="none", shapes={"size": 36})
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.key == "data.shapes.size" and "36 is not a multiple of 8" in str(info.value)
    raw["data"]["shapes"]["size"] = 40
    assert resolve_recipe(raw).data.shapes.size == 40


def test_apply_overrides_returns_a_copy() -> None:
    recipe = resolve_recipe(toy_raw())
    plain = recipe.to_dict()
    changed = apply_overrides(plain, ["train.max_steps=99"])
    assert changed["train"]["max_steps"] == 99 and plain["train"]["max_steps"] == 10
    assert recipe.train.max_steps == 10
    assert resolve_recipe(changed).train.max_steps == 99


SHIPPED = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def uninstalled_plugin_modules(path: Path) -> list[str]:
    """The plugin modules a recipe file names that are not installed here (files aside)."""
    named = yaml.safe_load(path.read_text(encoding="utf-8")).get("plugins") or []
    return [name for name in named if isinstance(name, str) and not name.endswith(".py")
            and importlib.util.find_spec(name) is None]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_recipes_resolve(path: Path) -> None:
    missing = uninstalled_plugin_modules(path)
    if missing:  # README's install has no plugins: the recipe must say which one is missing, no traceback
        with pytest.raises(RecipeError, match=rf"plugins\[0\]: plugin module '{missing[0]}' is not installed"):
            prepare_recipe(path)
        return
    recipe = prepare_recipe(path)
    assert resolve_recipe(recipe.to_dict()) == recipe
    assert all(info["params"] > 0 for info in network_summary(recipe).values())


def test_an_int_is_accepted_where_a_float_is_expected() -> None:
    raw = toy_raw()
    raw["train"]["optimizer"] = {"lr": 1, "betas": [0, 1 - 1e-3]}
    raw["model"]["lambda_x"] = 2
    recipe = resolve_recipe(raw)
    assert recipe.train.optimizer["lr"] == 1.0 and isinstance(recipe.train.optimizer["lr"], float)
    assert recipe.train.optimizer["betas"] == (0.0, 0.999)
    assert isinstance(recipe.model.options.lambda_x, float)


def test_relative_data_root_is_kept_as_written(tmp_path: Path) -> None:
    path = write(tmp_path / "sub" / "r.yaml", TOY_RECIPE)
    assert prepare_recipe(path).data.root == "datasets/toy"


def set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def drop_path(raw: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    del node[last]


INVALID = [
    # (dotted key, value or DROP, expected error key, expected words)
    ("trian", {}, "trian", "unknown key"),
    ("data.crop", 3, "data.crop", "unknown key"),
    ("log.evry", 3, "log.evry", "unknown key"),
    ("model.nzz", 3, "model.nzz", "unknown key"),
    ("model.networks.G.ngff", 3, "model.networks.G.ngff", "not an argument of generator 'toy_gen'"),
    ("model.networks.X", {"type": "toy_gen"}, "model.networks.X", "unknown network"),
    ("model.losses.l2", 1.0, "model.losses.l2", "unknown loss term"),
    ("train.batch_size", 0, "train.batch_size", "must be >= 1"),
    ("train.batch_size", True, "train.batch_size", "expected an integer, got bool"),
    ("train.batch_size", 2.0, "train.batch_size", "expected an integer, got float"),
    ("train.batch_size", "2", "train.batch_size", "expected an integer, got str"),
    ("train.optimizer.lr", 0, "train.optimizer.lr", "must be > 0"),
    ("train.optimizer.lr", float("nan"), "train.optimizer.lr", "finite"),
    ("train.optimizer.betas", [0.5], "train.optimizer.betas", "list of 2 items"),
    ("train.optimizer.betas", [0.5, 1.0], "train.optimizer.betas[1]", "must be < 1.0"),
    ("train.optimizer.type", "adamm", "train.optimizer.type", "is not one of"),
    ("model.losses.gan", -1, "model.losses.gan", "must be >= 0"),
    ("model.losses.gan", "high", "model.losses.gan", "expected a number"),
    ("model.nz", -1, "model.nz", "must be >= 0"),
    ("model.mode", "c", "model.mode", "is not one of: a, b"),
    ("model.use_E", 1, "model.use_E", "expected true or false"),
    ("train.device", "gpu", "train.device", "auto, cpu, cuda or cuda:N"),
    ("train.precision", "fp64", "train.precision", "is not one of: fp32, bf16, fp16"),
    ("train.nonfinite", "ignore", "train.nonfinite", "is not one of: stop, skip"),
    ("data.direction", "AB", "data.direction", "is not one of: AtoB, BtoA"),
    ("data.preprocess", "resize", "data.preprocess", "is not one of"),
    ("data.root", None, "data.root", "must not be null"),
    ("data.root", "DROP", "data.root", "is required"),
    ("data", "DROP", "data", "is required"),
    ("model.type", "DROP", "model.type", "is required"),
    ("model.type", "toy_gam", "model.type", "unknown model 'toy_gam'"),
    ("model.networks", "DROP", "model.networks", "is required"),
    ("model.networks.D", "DROP", "model.networks.D", "is required by model 'toy_gan'"),
    ("model.networks.G.type", "DROP", "model.networks.G.type", "is required"),
    ("model.networks.G.type", "toy_patch", "model.networks.G.type", "unknown generator 'toy_patch'"),
    ("model.networks.G.ngf", "many", "model.networks.G.ngf", "expected an integer"),
    ("model.networks.G.ngf", -4, "model.networks.G", "cannot be built"),
    ("model.networks.G.nz", 3, "model.networks.G.nz", "model 'toy_gan' gives it 4"),
    ("model.gan_loss", "lsgann", "model.gan_loss", "unknown gan_loss 'lsgann'"),
    ("model.init.type", "xavierr", "model.init.type", "unknown init"),
    ("model.init.gian", 1, "model.init.gian", "not an argument of init 'xavier'"),
    ("train.scheduler", "toy_stepp", "train.scheduler.type", "unknown scheduler"),
    ("train.scheduler", {"type": "toy_step", "total_steps": 3}, "train.scheduler.total_steps", "not an argument"),
    ("data.dataset", "alignd", "data.dataset", "unknown dataset"),
    ("data.crop_size", 100, "data.crop_size", "larger than data.load_size"),
    ("data.crop_size", 12, "data.crop_size", "12 is not a multiple of 8, which model.networks.G (toy_gen) needs"),
    ("data.input_nc", 3, "data.input_nc", "is 3, but model.networks.G (toy_gen) has input_nc 1"),
    ("data.workers", -1, "data.workers", "must be >= 0"),
    ("data.shapes", {"size": 2}, "data.shapes.size", "must be >= 16"),
    ("data.shapes", {"flavour": "shapes"}, "data.shapes.flavour", "is not one of"),
    ("data.shapes", [1], "data.shapes", "expected a mapping"),
    ("train.epochs", 0, "train.epochs", "nothing would be trained"),
    ("plugins", "mod", "plugins", "expected a list"),
    ("plugins", [1], "plugins[0]", "expected a string"),
    ("name", 3, "name", "expected a string"),
    ("model", [1], "model", "expected a mapping"),
    ("name", "run 1", "name", "letters, digits, _ . + -"),
    ("name", "../up", "name", "is not valid"),
    ("train.batch_size", 65537, "train.batch_size", "must be <= 65536"),
    ("train.seed", 2**63, "train.seed", "must be <= 9223372036854775807"),
    ("data.crop_size", 8193, "data.crop_size", "must be <= 8192"),
    ("data.shapes", {"size": 2048}, "data.shapes.size", "must be <= 1024"),
    ("train.deterministic", "yes", "train.deterministic", "expected true or false"),
    ("train.accelerators", "fast", "train.accelerators", "expected a list"),
    ("train.accelerators", ["no_such_accelerator"], "train.accelerators[0].type", "unknown accelerator"),
    ("train.tuned_cpu_convs", False, "train.tuned_cpu_convs", "was removed"),
    ("train.parallel_branches", True, "train.parallel_branches", "was removed"),
    ("train.reuse_freed_memory", True, "train.reuse_freed_memory", "was removed"),
]


@pytest.mark.parametrize("dotted, value, key, words", INVALID, ids=[f"{d}={v!r}" for d, v, _, _ in INVALID])
def test_each_invalid_value_names_its_key(dotted: str, value: Any, key: str, words: str) -> None:
    raw = toy_raw()
    if dotted == "train.epochs":
        raw["train"].pop("max_steps")
        raw["train"]["epochs_decay"] = 0
    if value == "DROP":
        drop_path(raw, dotted)
    else:
        set_path(raw, dotted, value)
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw, source="toy.yaml")
    assert info.value.key == key, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"toy.yaml: {key}: " if key else "toy.yaml: ")
    assert len(str(info.value).splitlines()) <= 10  # one screen


@pytest.mark.parametrize("retired", ["tuned_cpu_convs", "parallel_branches", "reuse_freed_memory"])
def test_removed_train_keys_are_named_for_users_and_dropped_from_stored_recipes(retired: str) -> None:
    raw = toy_raw()
    raw["train"][retired] = True
    with pytest.raises(RecipeError, match=f"train.{retired}: was removed") as info:
        resolve_recipe(raw)
    assert info.value.hint and info.value.hint.startswith("remove it")
    # a checkpoint's stored recipe from an earlier version still loads: the key is dropped
    dropped = resolve_recipe(raw, retired="drop")
    assert dropped == resolve_recipe(toy_raw()) and retired not in dropped.train.to_dict()
    assert raw["train"][retired] is True  # the input is not changed


def test_unknown_key_hint_suggests_the_close_name() -> None:
    raw = toy_raw()
    raw["train"]["batch_sise"] = 3
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.hint == "did you mean 'batch_size'?"


def test_unknown_component_lists_suggestions() -> None:
    raw = toy_raw()
    raw["model"]["networks"]["G"]["type"] = "toy_ge"
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.key == "model.networks.G.type" and "'toy_gen'" in (info.value.hint or "")


def test_crop_size_may_exceed_load_size_when_only_cropping() -> None:
    raw = toy_raw()
    raw["data"].update(preprocess="crop", load_size=8, crop_size=32)
    assert resolve_recipe(raw).data.crop_size == 32


def test_size_multiple_uses_load_size_for_scale_width() -> None:
    raw = toy_raw()
    raw["data"].update(preprocess="scale_width", load_size=36, crop_size=33)
    with pytest.raises(RecipeError, match="data.load_size: 36 is not a multiple of 8") as info:
        resolve_recipe(raw)
    assert info.value.hint == "use 32 or 40"


def test_model_check_recipe_runs_last() -> None:
    raw = toy_raw()
    raw["model"]["use_E"] = True
    raw["model"]["networks"]["E"] = {"type": "toy_enc", "input_nc": 3}
    raw["train"]["batch_size"] = 3
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.key == "train.batch_size" and "must be even" in str(info.value)
    raw["train"]["batch_size"] = 4
    assert resolve_recipe(raw).model.networks["E"]["nz"] == 4


def test_required_networks_depend_on_the_options() -> None:
    raw = toy_raw()
    raw["model"]["use_E"] = True
    with pytest.raises(RecipeError) as info:
        resolve_recipe(raw)
    assert info.value.key == "model.networks.E"


def test_errors_from_files_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", TOY_RECIPE.replace("batch_size: 2", "batch_size: 0"))
    with pytest.raises(RecipeError, match=r"r.yaml: train.batch_size: must be >= 1"):
        prepare_recipe(path)


# ---------------------------------------------------------------------------------- summary and dump

def test_network_summary_counts_parameters() -> None:
    summary = network_summary(resolve_recipe(toy_raw()))
    assert summary == {
        "G": {"component": "toy_gen", "kind": "generator", "params": toy_params(1, 3, 8, 4)},
        "D": {"component": "toy_patch", "kind": "discriminator", "params": 4 * 8 * 16 + 8},
    }


def test_dump_is_readable_yaml_that_loads_back(tmp_path: Path) -> None:
    recipe = resolve_recipe(toy_raw())
    text = dump_recipe(recipe)
    assert text.startswith("name: toy\nplugins: []\nmodel:\n  type: toy_gan\n")
    assert "betas: [0.5, 0.999]" in text
    path = write(tmp_path / "dumped.yaml", text)
    assert prepare_recipe(path) == recipe


# -------------------------------------------------------------------------------------- properties

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
                     st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3)),
    max_leaves=6)
_paths = st.sampled_from([
    "name", "plugins", "model", "model.type", "model.networks", "model.networks.G", "model.networks.G.type",
    "model.networks.G.ngf", "model.networks.G.num_downs", "model.networks.D.n_layers", "model.networks.E",
    "model.init", "model.gan_loss", "model.losses", "model.losses.gan", "model.nz", "model.use_E", "data",
    "data.root", "data.shapes", "data.crop_size", "data.load_size", "data.preprocess", "data.input_nc",
    "train", "train.batch_size", "train.optimizer", "train.optimizer.betas", "train.scheduler", "train.max_steps",
    "train.epochs", "log", "log.every", "extra", "data.extra",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_paths, _values), min_size=1, max_size=3))
@example([("plugins", [""])])
@example([("plugins", ["."])])
@example([("plugins", ["/"])])
@example([("plugins", ["0"])])
def test_random_recipes_resolve_or_raise_recipe_errors(changes: list[tuple[str, Any]]) -> None:
    raw = toy_raw()
    for dotted, value in changes:
        try:
            set_path(raw, dotted, value)
        except (AttributeError, TypeError):  # a parent was replaced by a scalar: skip this change
            continue
    try:
        recipe = resolve_recipe(raw)
    except RecipeError as error:
        assert str(error)
        return
    assert isinstance(recipe, Recipe) and resolve_recipe(recipe.to_dict()) == recipe


_keys = st.lists(st.sampled_from(["model", "networks", "G", "E", "ngf", "train", "seed", "data", "shapes",
                                  "size", "x", "losses", "gan", "nz", "type", ""]), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=20), st.builds(lambda k, v: ".".join(k) + "=" + v, _keys,
                                                          st.sampled_from(["1", "x", "{}", "[", "null", "-2", "true"]))),
                max_size=3))
def test_random_overrides_load_or_raise_recipe_errors(toy_file: Path, overrides: list[str]) -> None:
    try:
        recipe = resolve_recipe(load_recipe(toy_file, overrides))
    except RecipeError as error:
        assert str(error)
        return
    assert isinstance(recipe, Recipe)
