"""Reading recipe files: YAML, ``base:`` inheritance and ``--set KEY=VALUE`` overrides.

A recipe may start from others with ``base: other.yaml`` (or a list of files), resolved relative
to the recipe that names them. Bases are merged in order, then the recipe itself on top: mappings
merge key by key at every depth, anything else (numbers, strings, lists) is replaced whole. A
mapping is replaced whole too when its key is written ``KEY!`` (``D!: {type: my_d}``), or when it
names a component whose ``type`` differs from the inherited one: the base's arguments belong to the
other component.

An override ``--set model.networks.E.type=conv_256`` parses its value as YAML and replaces the
value at that path; a whole mapping can be replaced the same way (``--set 'train.scheduler={type:
step}'``). It may create a key only where the schema has one (or where a component accepts the
argument), so a typo is an error with a suggestion rather than a silently ignored setting.
"""
from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ganzoo.errors import RecipeError, did_you_mean
from ganzoo.plugins import normalise_recipe_plugins
from ganzoo.safe_files import NotARegularFile, open_regular_file
from ganzoo.recipe import schema


class _RecipeLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {first})", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads `2e-4` as a string because it wants a dot in floats; recipes are full of
# learning rates written that way, so accept YAML 1.2 exponent floats too.
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text``; syntax errors become a RecipeError with ``where`` and the line number."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark is not None else where
        problem = exc.problem or exc.context or "invalid YAML"
        raise RecipeError("", f"{place}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise RecipeError("", f"{where}: YAML error: {exc}") from None


def read_yaml_file(path: Path) -> dict[str, Any]:
    """Read one recipe file (no inheritance): a mapping, or a RecipeError saying what is wrong."""
    if not path.exists():
        raise RecipeError("", f"recipe file {path} does not exist")
    if path.is_dir():
        raise RecipeError("", f"{path} is a folder, not a recipe file")
    try:
        with open_regular_file(path) as f:  # a FIFO named x.yaml would block open() for ever
            text = f.read().decode("utf-8")
    except NotARegularFile as exc:
        raise RecipeError("", f"{path} is {exc.kind}, not a recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError("", f"cannot read recipe file {path}: {exc}") from None
    tree = parse_yaml(text, str(path))
    if tree is None:
        raise RecipeError("", "the file is empty; a recipe is a mapping of keys", source=str(path))
    if not isinstance(tree, dict):
        raise RecipeError("", f"the top level must be a mapping of keys, not a {type(tree).__name__}",
                          source=str(path))
    return tree


#: A key written with this suffix (``D!: {...}``) replaces the inherited value whole instead of merging into it.
REPLACE_MARK = "!"


def _marked(key: Any) -> bool:
    return isinstance(key, str) and len(key) > 1 and key.endswith(REPLACE_MARK)


def strip_replace_marks(tree: Any, path: tuple[str, ...] = ()) -> Any:
    """``tree`` with every ``KEY!`` written as ``KEY`` (what a recipe without ``base:`` means by it).

    A mapping holding both ``KEY`` and ``KEY!`` is a RecipeError: it says two things about one key.
    """
    if not isinstance(tree, Mapping):
        return tree
    result: dict[Any, Any] = {}
    for key, value in tree.items():
        name = key[: -len(REPLACE_MARK)] if _marked(key) else key
        if name in result or (name != key and name in tree):
            where = ".".join(str(p) for p in (*path, name))
            raise RecipeError(where, f"is written both as {name!r} and {name + REPLACE_MARK!r} in one mapping",
                              hint=f"keep {name + REPLACE_MARK!r} to replace the inherited value, or {name!r} to "
                                   "merge into it")
        result[name] = strip_replace_marks(value, (*path, str(name)))
    return result


def _type_changes(base: Any, child: Mapping[str, Any]) -> bool:
    return isinstance(base, Mapping) and "type" in child and "type" in base and child["type"] != base["type"]


def deep_merge(base: Mapping[str, Any], child: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """``child`` on top of ``base``: mappings merge recursively, every other value is replaced.

    Two cases replace a mapping whole instead: a key written ``KEY!`` in ``child`` (the marker is
    dropped), and a component mapping below the top-level sections whose ``type`` changes
    (``model.networks.D: {type: my_d}`` over a ``basic`` D drops the base's ``norm``, ``n_layers``...,
    which belong to the other component).
    """
    merged = dict(base)
    for key, value in child.items():
        if _marked(key):
            name = key[: -len(REPLACE_MARK)]
            if name in child:
                strip_replace_marks(child, path)  # raises: both KEY and KEY! are written
            merged[name] = strip_replace_marks(value, (*path, name))
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and not (
                len(path) >= 1 and _type_changes(merged[key], value)):
            merged[key] = deep_merge(merged[key], value, (*path, str(key)))
        else:
            merged[key] = strip_replace_marks(value, (*path, str(key)))
    return merged


def _display(path: Path) -> str:
    return os.path.normpath(str(path))


def load_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and everything it inherits from; ``chain`` is the files that led here."""
    here = path.resolve()
    names = [_display(p) for p in (*chain, path)]
    if here in {p.resolve() for p in chain}:
        raise RecipeError("base", f"inheritance cycle: {' -> '.join(names)}",
                          hint="a recipe cannot inherit from itself, directly or through another file")
    if chain and not path.exists():
        raise RecipeError("base", f"base file {_display(path)} does not exist ({' -> '.join(names)})",
                          hint="base paths are relative to the recipe that names them")
    tree = read_yaml_file(path)
    if "plugins" in tree:  # relative .py plugin paths mean the folder of the file that names them
        tree["plugins"] = normalise_recipe_plugins(tree["plugins"], path.parent)
    bases = tree.pop("base", None)
    if bases is None:
        return strip_replace_marks(tree)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise RecipeError("base", f"expected a file name or a list of file names, got {bases!r}",
                          source=_display(path))
    merged: dict[str, Any] = {}
    for name in bases:
        merged = deep_merge(merged, load_tree(path.parent / name, (*chain, path)))
    return deep_merge(merged, tree)


def split_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into its key path and its value parsed as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError("--set", f"{text!r} is not KEY=VALUE",
                          hint="for example --set train.max_steps=10 or --set model.networks.G.ngf=32")
    parts = key.split(".")
    if any(not p.strip() for p in parts):
        raise RecipeError("--set", f"{key!r} is not a dotted key path like train.batch_size")
    parts = [p.strip() for p in parts]
    if parts[0] in schema.LOAD_KEYS:
        raise RecipeError(key, "cannot be overridden; edit the recipe file instead")
    return parts, parse_yaml(value, f"--set {key}")


def apply_override(tree: dict[str, Any], text: str) -> None:
    """Apply one ``KEY=VALUE`` override to ``tree`` in place."""
    parts, value = split_override(text)
    where = f"(in --set {text})"
    node: dict[Any, Any] = tree
    for depth, part in enumerate(parts):
        prefix, here = tuple(parts[:depth]), ".".join(parts[: depth + 1])
        if part not in node:
            allowed = schema.keys_at(prefix, tree)
            if allowed is not None and part not in allowed:
                if not allowed:
                    raise RecipeError(".".join(prefix), f"is not a mapping, so it has no key {part!r} {where}")
                raise RecipeError(here, f"unknown key {where}", hint=did_you_mean(part, allowed)
                                  or f"keys here: {', '.join(map(str, allowed))}")
        if depth == len(parts) - 1:
            node[part] = value
            return
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise RecipeError(here, f"is {child!r}, not a mapping {where}")
        node = child


def apply_overrides(tree: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``tree`` with the ``KEY=VALUE`` overrides applied in order (``tree`` is not changed)."""
    result = copy.deepcopy(dict(tree))
    for text in overrides:
        apply_override(result, text)
    return result


def load_recipe(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a recipe file with its ``base:`` files, then apply ``KEY=VALUE`` overrides.

    The result is the raw (unresolved) recipe; :func:`ganzoo.recipe.resolve_recipe` fills the
    defaults and validates it. Nothing is imported: :func:`ganzoo.recipe.prepare_recipe` loads the
    recipe's plugins.
    """
    tree = load_tree(Path(path))
    for text in overrides:
        apply_override(tree, text)
    return tree
