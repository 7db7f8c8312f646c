"""Command-line options shared by the sub-commands that read a recipe."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def set_option(command: F) -> F:
    """Add ``--set KEY=VALUE`` (repeatable) to a command; the values arrive as ``overrides: tuple[str, ...]``."""
    return click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a recipe value; VALUE is YAML (e.g. --set train.max_steps=10 "
             "--set model.networks.G.type=unet_128). Repeatable.",
    )(command)


def recipe_argument(command: F) -> F:
    """Add the RECIPE argument (a YAML file; its existence is checked by the recipe loader)."""
    return click.argument("recipe", metavar="RECIPE")(command)


def raw_weights_option(command: F) -> F:
    """Add ``--raw-weights``: the trained generator weights even when the run kept their average (``train.ema``)."""
    return click.option(
        "--raw-weights", is_flag=True,
        help="Use the trained generator weights, not their moving average (runs with train.ema > 0).",
    )(command)


def trust_plugins_option(command: F) -> F:
    """Add ``--trust-checkpoint-plugins``: import the plugins a checkpoint's stored recipe lists.

    Off by default: a checkpoint is data, and a crafted one could name any file to import.
    """
    return click.option(
        "--trust-checkpoint-plugins", "trust_plugins", is_flag=True,
        help="Import the plugins the checkpoint's recipe lists (off by default: a checkpoint never runs code "
             "unless you say so; `ganzoo --plugin FILE` imports one you name).",
    )(command)


def console_warning(console: Any) -> Callable[[str], None]:
    """A ``warn`` callback printing ``warning: MESSAGE`` on ``console``."""
    return lambda message: console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def safe_folder_name(name: object, fallback: str) -> str:
    """A recipe's ``name`` as one folder name for default output paths (``runs/<name>``).

    A name is text from a recipe, not a path: separators, ``..``, a leading ``/`` or ``~`` and control
    characters must not move a run outside ``runs/``. Everything but letters, digits, ``_``, ``-``
    and ``.`` becomes ``_``; leading and trailing dots and underscores go; an empty result is
    ``fallback`` (the recipe file's stem).
    """
    import re

    text = re.sub(r"[^\w.-]+", "_", str(name or "")).strip("._")[:120]
    if not text or text in (".", ".."):
        text = re.sub(r"[^\w.-]+", "_", fallback).strip("._")[:120] or "run"
    return text


def recipe_with_plugins(path: Any, overrides: Any = (), announce: Callable[[str], None] | None = None) -> Any:
    """Load a recipe *file the user gave* (trusted), import the plugins it lists, apply ``--set``
    overrides, and resolve it: what ``ganzoo train/ablate/info/bench/import-official`` and
    ``data check --recipe`` read.

    Plugins are imported through :func:`ganzoo.plugins.activate_plugins` before the overrides (which
    may name their components) and again after them (an override may add a plugin).
    """
    from ganzoo.recipe import prepare_recipe

    _require_regular_recipe(path)
    return prepare_recipe(path, list(overrides), announce=announce)


def _require_regular_recipe(path: Any) -> None:
    """A recipe path that is a FIFO, socket or device would block ``open()`` for ever: refuse it."""
    from ganzoo.errors import RecipeError
    from ganzoo.safe_files import NotARegularFile, open_regular_file

    try:
        open_regular_file(path).close()
    except NotARegularFile as exc:
        raise RecipeError("", f"{path} is {exc.kind}, not a recipe file") from None
    except OSError:
        pass  # missing or unreadable: the recipe loader says so in its own words
