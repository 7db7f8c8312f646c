"""``ganzoo data download | check | edges``: real datasets, attached to the ``data`` group."""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ganzoo.cli.data_cmd import data_group


@data_group.command("download")
@click.argument("name", required=False)
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("datasets"),
              show_default=True, help="Folder the dataset goes into (as ROOT/NAME, where the recipes look).")
@click.option("--archive", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Install from an archive you downloaded yourself (no network).")
@click.option("--url", help="Download from this address instead of the official one (a mirror).")
@click.option("--sha256", help="Expected SHA-256 of the archive; the download is refused if it differs.")
@click.option("--keep-archive", is_flag=True, help="Keep ROOT/.downloads/<archive> after extracting.")
@click.option("--list", "show_list", is_flag=True, help="List the datasets that can be downloaded.")
@click.option("--max-unpacked-gb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Most GiB the archive may unpack to (default: 100x the archive, at least 1, at most 64); "
                   "more is refused as a decompression bomb.")
@click.option("--max-members", type=click.IntRange(min=1), default=None,
              help="Most files and folders the archive may hold (default: 1,000,000).")
def download_command(name: str | None, root: Path, archive: Path | None, url: str | None, sha256: str | None,
                     keep_archive: bool, show_list: bool, max_unpacked_gb: float | None = None,
                     max_members: int | None = None) -> None:
    """Download an official pix2pix / CycleGAN / BicycleGAN dataset NAME into ROOT/NAME.

    Resumable (run it again after an interruption), verified, and extracted safely.
    """
    from ganzoo.data.download import CATALOGUE, download_dataset, get_source, rich_progress

    console = Console(soft_wrap=True)
    if show_list or name is None:
        table = Table(title="official datasets (ganzoo data download NAME)")
        for column in ("name", "layout", "used by", "what"):
            table.add_column(column)
        for source in CATALOGUE.values():
            what = source.description + (" [yellow](manual download)[/]" if source.manual_only else "")
            table.add_row(source.name, source.layout, source.used_by, what)
        console.print(table)
        if name is None and not show_list:
            raise click.UsageError("give a dataset NAME (the table above lists them)")
        return
    source = get_source(name)
    target = root / source.name
    console.print(f"[bold]{source.name}[/] ({source.layout}, {source.used_by}) from "
                  f"{'your archive ' + str(archive) if archive else url or source.url}")
    folder = download_dataset(name, root, url=url, archive=archive, sha256=sha256, keep_archive=keep_archive,
                              progress=rich_progress, max_members=max_members,
                              max_unpacked_bytes=int(max_unpacked_gb * 2**30) if max_unpacked_gb else None)
    info = json.loads((folder / ".ganzoo-dataset.json").read_text())
    splits = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    console.print(f"[green]ready[/]: {target} ({', '.join(splits)}); archive SHA-256 {info['sha256']}")


@data_group.command("check")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--layout", type=click.Choice(["aligned", "unaligned"]), default="aligned", show_default=True,
              help="aligned: ROOT/<split>/ A|B images; unaligned: ROOT/<split>A/ and ROOT/<split>B/.")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path),
              help="Describe this recipe's preprocessing (default: the official resize_and_crop 286 -> 256).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(root: Path, layout: str, recipe: Path | None, as_json: bool) -> None:
    """Report what the dataset at ROOT holds and what does not fit; exit 1 when something is wrong."""
    from rich.progress import Progress

    from ganzoo.data.check import check_dataset, count_files
    from ganzoo.data.transforms import Preprocess

    direction = "AtoB"
    preprocess = None
    if recipe is not None:
        from ganzoo.cli.options import recipe_with_plugins

        data = recipe_with_plugins(recipe).data.to_dict()
        preprocess = Preprocess(data["preprocess"], data["load_size"], data["crop_size"], data["flip"])
        direction = data["direction"]
    console = Console(soft_wrap=True)
    if as_json or not root.is_dir():
        report = check_dataset(root, layout, preprocess=preprocess, direction=direction)
    else:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("reading images", total=count_files(root, layout))
            report = check_dataset(root, layout, preprocess=preprocess, direction=direction,
                                   tick=lambda: progress.advance(task))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"{root} ({layout})")
        for column in ("folder", "images", "sizes (most common)", "modes", "unreadable"):
            table.add_column(column, justify="right" if column in ("images", "unreadable") else "left")
        for name, folder in report.folders.items():
            sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in folder.sizes.most_common(3))
            if len(folder.sizes) > 3:
                sizes += f", +{len(folder.sizes) - 3} more"
            modes = ", ".join(f"{m} ({n})" for m, n in folder.modes.most_common())
            table.add_row(name, str(folder.count), sizes, modes, str(len(folder.unreadable)))
        console.print(table)
        for line in report.preprocessing:
            console.print(f"[cyan]preprocessing:[/] {line}")
        for line in report.remarks:
            console.print(f"[yellow]note:[/] {line}")
        for line in report.problems:
            console.print(f"[bold red]problem:[/] {line}")
        console.print("[green]ok[/]: ready to train on" if report.ok else
                      f"[bold red]{len(report.problems)} problem(s)[/]")
    if not report.ok:
        raise SystemExit(1)


@data_group.command("edges")
@click.argument("photos", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Side of each half of the A|B pairs.")
@click.option("--fit", type=click.Choice(["pad", "crop", "stretch"]), default="pad", show_default=True,
              help="How a non-square photo becomes square: white padding, centre crop, or stretching.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="Share of the photos (the last ones by name) written to OUT/val.")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Gaussian smoothing before edge detection (larger: fewer, smoother edges).")
@click.option("--low", type=float, default=0.1, show_default=True,
              help="Hysteresis low threshold, as a fraction of the image's strongest edges.")
@click.option("--high", type=float, default=0.25, show_default=True,
              help="Hysteresis high threshold, as a fraction of the image's strongest edges.")
@click.option("--overwrite", is_flag=True, help="Write into OUT even if it is not empty.")
def edges_command(photos: Path, out: Path, size: int, fit: str, val_fraction: float, sigma: float, low: float,
                  high: float, overwrite: bool) -> None:
    """Build an aligned edges -> photo dataset in OUT from the photos in PHOTOS (like edges2shoes).

    Edges come from a Canny-style detector, not the HED network of the official datasets
    (see docs/datasets.md).
    """
    from rich.progress import Progress

    from ganzoo.data.edges import EdgeSettings, build_edges_dataset
    from ganzoo.data.images import list_images

    settings = EdgeSettings(sigma=sigma, low=low, high=high)
    total = len(list_images(photos)) if photos.is_dir() else 0
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("edges", total=total)
        counts = build_edges_dataset(photos, out, size=size, fit=fit, val_fraction=val_fraction, settings=settings,
                                     overwrite=overwrite, progress=lambda: progress.advance(task))
    Console(soft_wrap=True).print(
        f"[green]wrote[/] {counts['train']} train and {counts['val']} val A|B pairs ({size}x{size} per half) to "
        f"{out}; train on it with data.root={out}, dataset aligned")
