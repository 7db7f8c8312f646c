"""Property tests: whatever a recipe holds, loading and resolving it gives a recipe or a RecipeError.

Hypothesis mutates a valid recipe at random key paths (known keys, near-miss typos, nonsense) with
random values, feeds random ``--set`` overrides, and writes random ``base:`` graphs (cycles and
missing files included). Every outcome must be a resolved recipe or a one-screen user error with
exit code 2; never another exception.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fault_injection import tiny_recipe
from ganzoo.errors import GanzooError, RecipeError
from ganzoo.recipe import Recipe, dump_recipe, load_recipe, resolve_recipe
from ganzoo.recipe.load import apply_overrides

BASES = {model: tiny_recipe(model, "datasets/fuzz") for model in ("pix2pix", "cyclegan", "bicyclegan")}

KNOWN_PATHS = [
    ("name",), ("plugins",), ("model",), ("model", "type"), ("model", "networks"), ("model", "networks", "G"),
    ("model", "networks", "G", "type"), ("model", "networks", "G", "ngf"), ("model", "networks", "G", "num_downs"),
    ("model", "networks", "D", "n_layers"), ("model", "networks", "D", "input_nc"), ("model", "init"),
    ("model", "init", "gain"), ("model", "gan_loss"), ("model", "losses"), ("model", "losses", "l1"),
    ("model", "nz"), ("model", "pool_size"), ("data",), ("data", "dataset"), ("data", "root"),
    ("data", "shapes"), ("data", "shapes", "size"), ("data", "load_size"), ("data", "crop_size"),
    ("data", "preprocess"), ("data", "direction"), ("data", "input_nc"), ("data", "max_items"),
    ("train",), ("train", "batch_size"), ("train", "max_steps"), ("train", "epochs"), ("train", "optimizer"),
    ("train", "optimizer", "lr"), ("train", "optimizer", "betas"), ("train", "optimizer", "type"),
    ("train", "scheduler"), ("train", "scheduler", "type"), ("train", "scheduler", "decay_steps"),
    ("train", "seed"), ("train", "device"), ("train", "precision"), ("train", "nonfinite"), ("log",),
    ("log", "every"), ("log", "keep_last"), ("base",),
]
WORDS = ["G", "D", "E", "type", "ngf", "lr", "nz", "betas", "trian", "modle", "netwroks", "batch_sise", "x",
         "", "0", "unet", "basic", "adam", "linear", "__class__", "none"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS), st.text(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(WORDS), inner, max_size=3)), max_leaves=6)
paths = st.one_of(st.sampled_from(KNOWN_PATHS),
                  st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(tuple),
                  st.tuples(st.sampled_from(KNOWN_PATHS), st.sampled_from(WORDS)).map(lambda t: (*t[0], t[1])))

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool) -> None:
    node: Any = tree
    for part in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(part, {})
    if isinstance(node, dict):
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value


def resolve_or_user_error(raw: Any) -> Recipe | None:
    try:
        resolved = resolve_recipe(raw)
    except GanzooError as error:
        assert error.exit_code == 2, f"{type(error).__name__} with exit code {error.exit_code}: {error}"
        assert str(error).strip() and len(str(error).splitlines()) <= 20  # one screen
        return None
    # A resolved recipe is complete and round-trips through its own YAML.
    assert isinstance(resolved, Recipe) and {"model", "data", "train", "log"} <= set(resolved.to_dict())
    assert resolve_recipe(yaml.safe_load(dump_recipe(resolved))) == resolved
    assert resolve_recipe(resolved.to_dict()) == resolved
    return resolved


@FUZZ
@given(model=st.sampled_from(sorted(BASES)),
       mutations=st.lists(st.tuples(paths, values, st.booleans()), min_size=1, max_size=4))
def test_random_recipe_trees_resolve_or_raise_a_user_error(model: str, mutations: list) -> None:
    raw = copy.deepcopy(BASES[model])
    for path, value, delete in mutations:
        set_path(raw, path, value, delete)
    resolve_or_user_error(raw)


@FUZZ
@given(model=st.sampled_from(sorted(BASES)),
       overrides=st.lists(st.tuples(paths, st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True)
                                                                .strip().removesuffix("...").strip()),
                                                     st.text(max_size=12))), min_size=1, max_size=3))
def test_random_set_overrides_apply_or_raise_a_recipe_error(model: str, overrides: list) -> None:
    texts = [".".join(path) + "=" + value.replace("\n", " ") for path, value in overrides]
    try:
        raw = apply_overrides(BASES[model], texts)
    except RecipeError as error:
        assert error.exit_code == 2 and str(error).strip()
        return
    resolve_or_user_error(raw)


@FUZZ
@given(files=st.lists(st.tuples(st.lists(st.integers(0, 4), max_size=2), st.booleans()), min_size=1, max_size=4),
       text=st.one_of(st.none(), st.text(max_size=20)))
def test_random_base_graphs_load_or_raise_a_recipe_error(tmp_path_factory: Any, files: list, text: str | None) -> None:
    folder = tmp_path_factory.mktemp("bases")
    for i, (bases, broken) in enumerate(files):
        tree: dict[str, Any] = copy.deepcopy(BASES["pix2pix"]) if i == 0 else {"train": {"seed": i}}
        if bases:
            tree["base"] = [f"r{b}.yaml" for b in bases]  # may point at itself, at a cycle or at no file
        content = yaml.safe_dump(tree)
        if broken and text is not None:
            content += "\n" + text  # may break the YAML
        (folder / f"r{i}.yaml").write_text(content)
    try:
        raw = load_recipe(Path(folder / "r0.yaml"))
    except RecipeError as error:
        assert error.exit_code == 2 and str(error).strip()
        return
    resolve_or_user_error(raw)
