"""``ganzoo import-official PTH... --recipe RECIPE --out CKPT``: official saved networks -> a ganzoo checkpoint."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ganzoo.cli.app import main
from ganzoo.cli.options import set_option


@main.command("import-official")
@click.argument("files", nargs=-1, required=True, metavar="PTH...")
@click.option("--recipe", "recipe_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Recipe describing the same architecture as the saved networks.")
@set_option
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file to write (.pt).")
def import_command(files: tuple[str, ...], recipe_path: Path, overrides: tuple[str, ...], out_file: Path) -> None:
    """Convert official pix2pix / CycleGAN / BicycleGAN networks (latest_net_G.pth ...) into a ganzoo checkpoint.

    Each PTH is an official *_net_<NAME>.pth file, or NAME=PATH. The checkpoint holds the networks and
    the resolved recipe, not optimizer state: `ganzoo sample`, `ganzoo eval` and ganzoo.load work on it,
    training cannot resume from it.
    """
    from ganzoo.official import import_official
    from ganzoo.cli.options import recipe_with_plugins

    recipe = recipe_with_plugins(recipe_path, list(overrides))
    summary = import_official(list(files), recipe, out_file)
    console = Console(stderr=True)
    for name, path in summary["imported"].items():
        console.print(f"  {name} <- {path}", highlight=False)
    if summary["initialised"]:
        console.print(f"[yellow]note:[/] no file for {', '.join(summary['initialised'])}: kept at their "
                      "initial weights (not needed for sampling or evaluation)")
    console.print(f"[green]wrote[/] {out_file} (networks only; cannot resume training)")
