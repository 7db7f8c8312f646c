"""``ganzoo info RECIPE [--set KEY=VALUE ...] [--json]``: the fully resolved recipe and its networks."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from ganzoo.cli.app import main
from ganzoo.cli.options import recipe_argument, recipe_with_plugins, set_option
from ganzoo.recipe import dump_recipe, network_summary


@main.command("info")
@recipe_argument
@set_option
@click.option("--json", "as_json", is_flag=True, help='Print {"recipe": {...}, "networks": {...}} as JSON.')
def info_command(recipe: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Show the fully resolved RECIPE (every default filled in) and the parameter count of each network."""
    resolved = recipe_with_plugins(recipe, overrides)
    networks = network_summary(resolved)
    if as_json:
        click.echo(json.dumps({"recipe": resolved.to_dict(), "networks": networks}, indent=2))
        return
    console = Console()
    text = dump_recipe(resolved)
    if console.is_terminal:
        console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default", word_wrap=True))
    else:  # piped: plain YAML, unwrapped, so it can be saved and loaded again
        click.echo(text)
    table = Table(title=f"networks of {resolved.name}")
    table.add_column("network", style="bold")
    table.add_column("kind", style="cyan")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    for name, info in networks.items():
        table.add_row(name, info["kind"], info["component"], f"{info['params']:,}")
    table.add_row("total", "", "", f"{sum(i['params'] for i in networks.values()):,}", style="dim")
    console.print(table)
