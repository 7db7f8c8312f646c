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
