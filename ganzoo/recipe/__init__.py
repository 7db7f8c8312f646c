"""YAML recipes: ``base:`` inheritance, ``--set`` overrides, defaults, validation and resolution.

    recipe = prepare_recipe("recipes/pix2pix_facades.yaml", ["train.max_steps=10"])  # a frozen Recipe
    recipe.train.batch_size, recipe.model.options.nz
    print(dump_recipe(recipe))                 # the fully resolved recipe
    network_summary(recipe)                    # {"G": {"component": "unet_256", "kind": ..., "params": ...}}
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from ganzoo.recipe.load import apply_overrides, deep_merge, load_recipe
from ganzoo.recipe.resolve import build_meta_networks, network_summary, resolve_recipe, resolve_with_networks
from ganzoo.recipe.schema import DataConfig, LogConfig, ModelConfig, Recipe, TrainConfig


def prepare_recipe(path: str | os.PathLike[str], overrides: Iterable[str] = (), *,
                   announce: Callable[[str], None] | None = None) -> Recipe:
    """Load a recipe file (with its bases and ``KEY=VALUE`` overrides), import the plugins it lists
    (a file the user names is trusted) and resolve it."""
    from pathlib import Path

    from ganzoo.plugins import activate_plugins

    source = os.fspath(path)
    raw = load_recipe(path)
    activate_plugins(recipe=raw, trust_recipe=True, recipe_source=source, base_dir=Path(path).expanduser().parent,
                     announce=announce)
    overrides = list(overrides)
    if overrides:
        raw = apply_overrides(raw, overrides)
        activate_plugins(recipe=raw, trust_recipe=True, recipe_source=f"{source} (with --set)", base_dir=".",
                         announce=announce)  # an override may add a plugin
    return resolve_recipe(raw, source=source)


class _RecipeDumper(yaml.SafeDumper):
    """Block-style YAML in the recipe's own key order, written like the shipped recipes.

    Lists of plain values, flat ``{type: ..., **arguments}`` components (a network, the init, the
    optimizer, the scheduler) and mappings of numbers (the loss weights) stay on one line each.
    """


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(_is_plain(v) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.Node:
    numbers = bool(data) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values())
    flow = numbers or "type" in data and all(_is_plain(v) or (isinstance(v, list) and all(map(_is_plain, v)))
                                  for v in data.values())
    node = dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)
    return node


_RecipeDumper.add_representer(list, _represent_list)
_RecipeDumper.add_representer(tuple, _represent_list)
_RecipeDumper.add_representer(dict, _represent_dict)


def dump_recipe(recipe: Recipe | Mapping[str, Any]) -> str:
    """The recipe as readable YAML (key order preserved), loadable again by :func:`load_recipe`."""
    data = recipe.to_dict() if isinstance(recipe, Recipe) else dict(recipe)
    return yaml.dump(data, Dumper=_RecipeDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=200)


__all__ = [
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "Recipe",
    "TrainConfig",
    "apply_overrides",
    "build_meta_networks",
    "deep_merge",
    "dump_recipe",
    "load_recipe",
    "network_summary",
    "prepare_recipe",
    "resolve_recipe",
    "resolve_with_networks",
]
