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
