"""``ganzoo list [KIND] [--json]``: what the registry holds."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ganzoo.cli.app import main
from ganzoo.registry import KINDS, list_components, registry


@main.command("list")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print {kind: [names]} as JSON.")
def list_command(kind: str | None, as_json: bool) -> None:
    """List registered components (all kinds, or one KIND) with their descriptions."""
    names = list_components(kind)
    if as_json:
        click.echo(json.dumps(names, indent=2))
        return
    table = Table(title="ganzoo components", show_lines=False)
    table.add_column("kind", style="cyan")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("from", style="dim")
    for k in ([kind] if kind else list(KINDS)):
        for entry in registry(k).entries():
            shown = f"{entry.name}:<model_name>" if entry.prefix else entry.name
            table.add_row(k, shown, entry.description, entry.source)
    Console().print(table)
