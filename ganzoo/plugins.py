"""Plugins: components registered by code outside ganzoo, found three ways.

1. An installed package declaring the entry-point group ``ganzoo.plugins``::

       [options.entry_points]
       ganzoo.plugins =
           sn_patchgan = ganzoo_sn_patchgan

   is imported when the ``ganzoo`` command starts (and before a recipe is resolved). The entry
   point may name a module (importing it registers its components) or a callable (called once).
2. A recipe's ``plugins:`` list of module names or ``.py`` files, imported before the recipe's
   component names are checked. Relative ``.py`` paths are relative to the recipe file.
3. ``ganzoo --plugin MODULE_OR_FILE`` on the command line (relative paths: the working directory,
   because the user typed them there).

Every entry point loads plugins through one function, :func:`activate_plugins`, which knows whom to
trust. Installed packages and ``--plugin`` are what the user chose. A recipe file the user trains
(``ganzoo train RECIPE``) and the user's own run folder (``ganzoo train --resume RUN``, which says so
on screen) are trusted too. A checkpoint is data: ``ganzoo.load``, ``sample``, ``eval`` and ``export``
never import the plugins its stored recipe names. When a component from one of them is missing, the
error names them and the opt-in (``--plugin``, ``--trust-checkpoint-plugins``,
``ganzoo.load(..., plugins=[...])``).

A plugin registers components with the same :func:`ganzoo.register` decorator as ganzoo itself;
every registration made while it is imported is attributed to it, so ``ganzoo list`` shows where
a component came from. A name that is already taken is an error unless the plugin registers with
``override=True``. The working directory is never searched implicitly: a module name must be
importable from the installed packages, anything else is given as a path.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ganzoo.errors import CheckpointError, GanzooError, RecipeError
from ganzoo.registry import _ensure_builtins, registering_from

#: The entry-point group an installed plugin declares.
ENTRY_POINT_GROUP = "ganzoo.plugins"

#: Set to 1 to skip installed (entry-point) plugins, e.g. while one of them is broken.
DISABLE_ENV = "GANZOO_NO_PLUGINS"


class PluginError(GanzooError):
    """A plugin that cannot be found or fails while it is imported."""

    exit_code = 2


# What has been imported already: plugin spec (module name or resolved file path) -> source label.
_loaded: dict[str, str] = {}
_entry_points_loaded = False


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a ``.py`` file rather than an importable module."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def loaded_plugins() -> dict[str, str]:
    """``{spec: source label}`` of every plugin imported in this process."""
    return dict(_loaded)


@contextlib.contextmanager
def _without_working_directory() -> Iterator[None]:
    """Hide the implicit working-directory entries of ``sys.path`` (``''`` and ``python -m``'s cwd).

    A plugin name must mean an installed module, never whatever file of that name happens to lie
    in the folder the command is run from.
    """
    saved = list(sys.path)
    cwd = os.getcwd()
    implicit = {"", "."}
    if sys.path and sys.path[0] not in implicit and os.path.abspath(sys.path[0]) == cwd:
        sys.path.pop(0)  # `python -m` puts the working directory first
    sys.path[:] = [p for p in sys.path if p not in implicit]
    try:
        yield
    finally:
        sys.path[:] = saved


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _failure(label: str, exc: BaseException) -> PluginError:
    if isinstance(exc, SystemExit):
        return PluginError(f"plugin {label} called sys.exit({exc.code!r}) while being imported; a plugin "
                           "must only define and register components",
                           hint="remove the sys.exit / exit() call at the plugin's top level")
    if isinstance(exc, GanzooError):
        detail = exc.message
        hint = exc.hint
    else:
        detail = f"{type(exc).__name__}: {exc}"
        hint = None
    if "already registered" in detail:
        hint = ("rename the component, or register it with override=True if replacing the existing one "
                "is intended")
    return PluginError(f"plugin {label} failed to load: {detail}", hint=hint)


def _import_module(name: str) -> None:
    label = name
    try:
        with _without_working_directory(), registering_from(label):
            importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PluginError(
                f"plugin module {name!r} is not installed (the working directory is not searched)",
                hint="pip install the package that provides it, or give the path to a .py file "
                     "(e.g. ./my_parts.py)") from None
        raise _failure(label, exc) from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (any failure inside a plugin is reported with its name)
        raise _failure(label, exc) from None


def _import_file(path: Path) -> None:
    label = path.name
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist",
                          hint="relative paths in a recipe's plugins: are relative to the recipe file")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"ganzoo_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with registering_from(label):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (sys.exit() at import must not end the command)
        sys.modules.pop(module_name, None)
        raise _failure(str(path), exc) from None


def load_plugin(spec: str, *, base_dir: str | os.PathLike[str] | None = None) -> str:
    """Import one plugin (a module name or a ``.py`` path) once; returns the key it is known by.

    Args:
        spec: ``"package.module"`` or ``"path/to/parts.py"``.
        base_dir: folder relative ``.py`` paths are resolved against (default: the working
            directory, where a user typed the path).

    Raises:
        PluginError: the plugin is missing or raised while importing (its name and exception shown).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plugin is a module name or a .py file path, got {spec!r}")
    _ensure_builtins()  # a plugin's names must collide with the built-ins now, not later
    spec = spec.strip()
    if is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute():
            path = Path(base_dir or os.getcwd()) / path
        key = str(path.resolve())
        if key not in _loaded:
            _import_file(Path(key))
            _loaded[key] = path.name
        return key
    if not _MODULE_NAME.fullmatch(spec):
        raise PluginError(f"plugin {spec!r} is neither a dotted module name nor a path to a .py file",
                          hint="write a module as package.module, a file as ./my_parts.py")
    if spec not in _loaded:
        _import_module(spec)
        _loaded[spec] = spec
    return spec


def load_plugins(specs: Iterable[str], *, base_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """:func:`load_plugin` for each spec, in order."""
    return [load_plugin(s, base_dir=base_dir) for s in specs]


def _entry_point_label(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    dist_name = getattr(dist, "name", None) if dist is not None else None
    return f"{dist_name}:{entry_point.name}" if dist_name else entry_point.name


def load_entry_point_plugins(*, force: bool = False) -> list[str]:
    """Import every installed plugin (entry-point group ``ganzoo.plugins``) once per process.

    Skipped when the environment variable ``GANZOO_NO_PLUGINS`` is set to a non-empty value.
    Returns the labels (``distribution:entry-point``) of the plugins loaded by this call.
    """
    global _entry_points_loaded
    if (_entry_points_loaded and not force) or os.environ.get(DISABLE_ENV):
        return []
    _entry_points_loaded = True
    _ensure_builtins()
    labels = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = _entry_point_label(entry_point)
        if label in _loaded.values():
            continue
        try:
            with _without_working_directory(), registering_from(label):
                target = entry_point.load()
                if callable(target) and not isinstance(target, type(sys)):
                    target()
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            error = _failure(f"{label} (entry point {entry_point.value})", exc)
            error.hint = error.hint or f"fix or uninstall it; set {DISABLE_ENV}=1 to start without installed plugins"
            raise error from None
        _loaded[f"entry-point:{label}"] = label
        labels.append(label)
    return labels


def normalise_recipe_plugins(plugins: Any, recipe_dir: str | os.PathLike[str]) -> Any:
    """A recipe's ``plugins:`` list with relative ``.py`` paths made absolute against ``recipe_dir``.

    Done when the recipe is loaded, so the resolved recipe stored in a run (and read back by
    ``--resume`` or ``ganzoo export``) still finds its plugin files from anywhere.
    Anything that is not a list of strings is returned unchanged for the validator to report.
    """
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        return plugins
    out = []
    for spec in plugins:
        if is_file_spec(spec) and not Path(spec).expanduser().is_absolute():
            spec = str((Path(recipe_dir) / spec).resolve())
        out.append(spec)
    return out


def recipe_plugin_specs(recipe: Any) -> list[str]:
    """The string entries of a recipe's ``plugins:`` list (others are left for the recipe validator)."""
    plugins = recipe.get("plugins") if isinstance(recipe, Mapping) else None
    if not isinstance(plugins, list):
        return []
    return [spec for spec in plugins if isinstance(spec, str)]


def _is_loaded(spec: str, base_dir: str | os.PathLike[str] | None = None) -> bool:
    if is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute():
            if base_dir is None:
                return False
            path = Path(base_dir) / path
        return str(path.resolve()) in _loaded
    return spec in _loaded


def activate_plugins(*, cli: Iterable[str] = (), recipe: Mapping[str, Any] | None = None,
                     trust_recipe: bool = False, recipe_source: str | None = None,
                     base_dir: str | os.PathLike[str] | None = None,
                     announce: Callable[[str], None] | None = None) -> list[str]:
    """The one way ganzoo imports plugins; every command and ``ganzoo.load`` call it.

    Args:
        cli: plugins the user named (``--plugin``, ``ganzoo.load(plugins=...)``): always imported,
            relative paths against the working directory where the user typed them.
        recipe: a recipe whose ``plugins:`` list may be imported.
        trust_recipe: import ``recipe``'s plugins. True only for what the user chose to run: a recipe
            file given to ``ganzoo train`` / ``ablate`` / ``info``, or the user's own run folder on
            ``--resume`` (with ``announce``). False for a checkpoint's stored recipe: it is data.
        recipe_source: where ``recipe`` came from, for ``announce`` and error messages.
        base_dir: what relative ``.py`` entries of a trusted recipe are relative to (a recipe file's
            folder; None: such entries are refused, since a stored recipe always holds absolute paths).
        announce: called with one line (``loading plugins x.py named by RUN/recipe.yaml``) before
            a trusted recipe's plugins that are not imported yet are imported.

    Returns:
        The recipe's plugin entries that are *not* imported (untrusted and not loaded already), for
        an error to name when a component they would register is missing.

    Installed (entry-point) plugins are imported first in every case.
    """
    load_entry_point_plugins()
    for spec in cli:
        load_plugin(spec)
    specs = recipe_plugin_specs(recipe)
    pending = [spec for spec in specs if not _is_loaded(spec, base_dir)]
    if not trust_recipe:
        return pending
    if pending and announce is not None:
        names = ", ".join(Path(spec).name if is_file_spec(spec) else spec for spec in pending)
        announce(f"loading plugin{'s' if len(pending) > 1 else ''} {names} named by {recipe_source or 'the recipe'}")
    plugins = list(recipe.get("plugins") or []) if isinstance(recipe, Mapping) else []
    for index, spec in enumerate(plugins):
        if not isinstance(spec, str):
            continue
        try:
            if is_file_spec(spec) and not Path(spec).expanduser().is_absolute() and base_dir is None:
                raise PluginError(f"plugin file {spec!r} is a relative path in {recipe_source or 'a stored recipe'}; "
                                  "ganzoo stores plugin files with absolute paths, so it is not resolved against "
                                  "the working directory",
                                  hint="give the file with --plugin PATH")
            load_plugin(spec, base_dir=base_dir)
        except PluginError as error:
            # A recipe's plugin that fails is a recipe mistake: report it with its key.
            raise RecipeError(f"plugins[{index}]", error.message, hint=error.hint,
                              source=recipe_source) from None
    return []


def missing_plugins_error(path: str | os.PathLike[str], error: GanzooError, pending: list[str],
                          command: str | None = None) -> GanzooError:
    """The error for a checkpoint whose component is missing: names the plugins its recipe lists
    that were not imported (a checkpoint never imports code), and how to import them."""
    if not pending:
        return error
    names = ", ".join(pending)
    usage = f"`ganzoo --plugin {pending[0]} {command} ...`" if command else f"--plugin {pending[0]}"
    what = error.message if error.message.startswith(f"{path}: ") else f"{path}: {error.message}"
    return CheckpointError(
        f"{what.rstrip('.')}. Its recipe lists plugin(s) {names}, which were not imported: "
        "loading a checkpoint never runs code it names",
        hint=f"if you trust them, import them with {usage} or --trust-checkpoint-plugins; in Python, "
             f"ganzoo.load(path, plugins=[...]) or ganzoo.load(path, trust_checkpoint_plugins=True)")


def load_recipe_plugins(recipe: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None) -> None:
    """Import the installed plugins and those a *trusted* recipe lists under ``plugins:``.

    Kept for callers that have not moved to :func:`activate_plugins` (which this calls). Entries that
    are not strings are left for the recipe validator, which reports them with their key.
    """
    activate_plugins(recipe=recipe, trust_recipe=True, base_dir=base_dir if base_dir is not None else os.getcwd())


__all__ = [
    "DISABLE_ENV",
    "activate_plugins",
    "missing_plugins_error",
    "recipe_plugin_specs",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "load_entry_point_plugins",
    "load_plugin",
    "load_plugins",
    "load_recipe_plugins",
    "loaded_plugins",
    "normalise_recipe_plugins",
]
