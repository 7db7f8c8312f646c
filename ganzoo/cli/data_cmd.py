"""``ganzoo data ...``: get datasets onto disk (the built-in shapes world for now)."""
from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ganzoo.cli.app import main
from ganzoo.data.shapes import FLAVOURS, ensure_shapes, generate_shapes, read_info
from ganzoo.errors import DataError


@main.group("data")
def data_group() -> None:
    """Create or fetch datasets."""


@data_group.command("shapes")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--flavour", type=click.Choice(list(FLAVOURS)), default="shapes-multimodal", show_default=True,
              help="multimodal: random colours (BicycleGAN); deterministic: colour by shape (pix2pix); "
                   "unpaired: warm vs cool domains (CycleGAN).")
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True, help="Image side in pixels.")
@click.option("--n-train", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--n-val", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--n-test", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT even if it holds another dataset.")
def shapes_command(out: Path, flavour: str, size: int, n_train: int, n_val: int, n_test: int, seed: int,
                   overwrite: bool) -> None:
    """Generate the synthetic shapes world into OUT (deterministic from --seed)."""
    spec = {"flavour": flavour, "size": size, "n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed}
    console = Console(soft_wrap=True)
    started = time.perf_counter()
    already = (out / "shapes.json").is_file() and not overwrite
    try:
        root = generate_shapes(out, **spec, overwrite=True) if overwrite else ensure_shapes(out, **spec)
    except DataError as error:
        if not out.is_dir():
            raise
        raise DataError(error.message, hint="pass --overwrite to replace it, or choose another OUT") from None
    elapsed = time.perf_counter() - started
    info = read_info(root)
    console.print(f"[bold]{flavour}[/] in {root}: {info['layout']} layout, {size}x{size} px, seed {seed}")
    table = Table()
    table.add_column("folder", style="cyan")
    table.add_column("images", justify="right")
    for folder, count in info["folders"].items():
        table.add_row(folder, str(count))
    console.print(table)
    if already:
        console.print(f"[green]{root}[/] already holds this dataset; nothing written.")
    else:
        total = sum(info["folders"].values())
        console.print(f"[green]wrote {total} images[/] to {root} in {elapsed:.1f} s "
                      f"(metadata: <folder>/meta.jsonl, spec: shapes.json)")
