"""``ganzoo sample RUN_OR_CHECKPOINT --input PATH [--num-z N] [--sync-z] [--encode TARGET] [--interp STEPS]``.

For every input image: N outputs from random codes (the same codes for every input with
``--sync-z``), optionally the output for the code encoded from a target image, optionally a
strip and a GIF walking the code space; PNGs, a grid per input, one labelled sheet of all inputs
(``sheet.png``: input, target when the inputs are A|B pairs, G(A, E(B)), outputs) and an
``index.html`` to browse. pix2pix and CycleGAN give one output per input (``--direction`` picks
CycleGAN's generator). A|B pair files of an aligned dataset are recognised (twice as wide as high)
and split. The default output folder is inside the run: ``RUN/samples/sample-<input>-<time>``.
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import click
import torch
from rich.console import Console

from ganzoo.cli.app import main
from ganzoo.cli.options import console_warning, raw_weights_option, safe_folder_name, trust_plugins_option
from ganzoo.errors import GanzooError


def _save(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from ganzoo.inference import to_uint8

    array = to_uint8(image).permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)


def _grid(images: list[torch.Tensor], path: Path) -> None:
    from torchvision.utils import save_image

    rgb = [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in images]
    save_image(torch.stack(rgb), path, nrow=len(rgb), padding=2, pad_value=1.0, normalize=True, value_range=(-1, 1))


def _gif(frames: list[torch.Tensor], path: Path, duration_ms: int = 120) -> None:
    from PIL import Image

    from ganzoo.inference import to_uint8

    pictures = []
    for frame in frames:
        array = to_uint8(frame).permute(1, 2, 0).numpy()
        pictures.append(Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array))
    # Forth and back, so the loop has no jump.
    sequence = pictures + pictures[-2:0:-1]
    sequence[0].save(path, save_all=True, append_images=sequence[1:], duration=duration_ms, loop=0)


def write_index(out_dir: Path, rows: list[dict[str, object]], title: str, sheet: str | None = None) -> Path:
    """An ``index.html`` showing the labelled sheet, then each input's grid, outputs and interpolation."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif} img{image-rendering:pixelated;margin:2px} "
             "td{vertical-align:top;padding:4px}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    if sheet:
        parts.append(f"<p><img src='{html.escape(sheet)}'></p>")
    parts.append("<table>")
    for row in rows:
        cells = [f"<td><b>{html.escape(str(row['name']))}</b><br><img src='{html.escape(str(row['grid']))}'></td>"]
        if row.get("gif"):
            cells.append(f"<td>interpolation<br><img src='{html.escape(str(row['gif']))}'></td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def default_out_dir(run_or_checkpoint: Path, input_path: Path) -> Path:
    """``RUN/samples/sample-<input name>-<time>``: inside the run folder the model came from (the folder
    holding ``checkpoints/`` for a checkpoint file), never in the working directory."""
    path = Path(run_or_checkpoint).expanduser()
    if path.is_dir():
        run = path
    else:
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    name = safe_folder_name(input_path.expanduser().resolve().name, "input")
    return run / "samples" / f"sample-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _output_channels(model: torch.nn.Module) -> int:
    nets = model.networks
    net = nets["G"] if "G" in nets else nets["G_A"]
    return int(getattr(net, "output_nc", 3))


def _pair_targets(paths: list[Path], model: torch.nn.Module, pairs: bool | None, other: str,
                  channels: int) -> dict[int, torch.Tensor]:
    """The target half of every input that is an A|B pair (by index), for the sheet and G(A, E(B))."""
    from ganzoo.data.images import read_image
    from ganzoo.inference import is_pair_image, load_input_images

    if pairs is False:
        return {}
    found = {}
    for index, path in enumerate(paths):
        if pairs is None and not is_pair_image(*read_image(path).size):
            continue
        found[index] = load_input_images([path], model, channels=channels, pairs=True, direction=other)[0][1]
    return found


def write_sheet(path: Path, rows: list[list[torch.Tensor | None]], model: torch.nn.Module, *, nz: int,
                shared: bool, title: str, direction: str = "AtoB") -> Path:
    """The labelled sheet of ``ganzoo sample``: one row per input; columns input, target (pairs), G(A, E(B))
    (pairs, with an encoder), G(A, E(--encode)), then the outputs. Columns no row has are left out; a
    missing cell (an input without a target) is grey."""
    from ganzoo.training.run_log import labelled_sheet

    if not rows:
        return path
    width = max(len(r) for r in rows)
    reference = rows[0][0]
    names = ["input", "target", "G(A,E(B))", "G(A,E(encode))"]
    outputs = width - len(names)
    if nz:
        names += [f"G(A,z{k})" for k in range(1, outputs + 1)]
    else:
        cyclegan = "G_A" in model.networks
        names += [("G_A(A)" if direction == "AtoB" else "G_B(B)") if cyclegan else "G(A)"]
    columns, labels = [], []
    for c in range(width):
        cells = [r[c] if c < len(r) else None for r in rows]
        if all(cell is None for cell in cells):
            continue
        blank = next(cell for cell in cells if cell is not None)
        filled = [cell if cell is not None else torch.zeros_like(blank) for cell in cells]
        columns.append(torch.stack([_as_rgb(cell, reference) for cell in filled]))
        labels.append(names[c])
    if nz and not shared:
        title += " (codes differ per row; --sync-z shares them)"
    labelled_sheet(columns, labels, title=title).save(path)
    return path


def _as_rgb(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    if image.shape[-2:] != reference.shape[-2:]:
        image = torch.nn.functional.interpolate(image[None], size=reference.shape[-2:], mode="nearest")[0]
    return image


@main.command("sample")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="An input image or a folder of them.")
@click.option("--num-z", default=8, show_default=True, type=click.IntRange(min=1),
              help="Outputs per input from random codes (models with a latent code).")
@click.option("--sync-z", is_flag=True, help="Use the same random codes for every input.")
@click.option("--encode", "encode_path", type=click.Path(path_type=Path),
              help="Also show the output for the code encoded from this target image (BicycleGAN).")
@click.option("--interp", default=0, type=click.IntRange(min=0),
              help="Add a strip and GIF of STEPS outputs along the line between two random codes.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB", show_default=True,
              help="CycleGAN: which generator translates the inputs.")
@click.option("--pairs/--no-pairs", default=None,
              help="Inputs are A|B side-by-side images (input half used, target half shown in sheet.png) / are "
                   "whole images. Default: a file twice as wide as high is a pair when the model trained on "
                   "aligned data.")
@click.option("--sheet-rows", default=12, show_default=True, type=click.IntRange(min=1),
              help="Inputs shown in sheet.png (the first N).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random codes.")
@raw_weights_option
@trust_plugins_option
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: the recipe's train.device rule).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: RUN/samples/sample-<input name>-<time>, inside the run).")
def sample_command(run_or_checkpoint: Path, input_path: Path, num_z: int, sync_z: bool, encode_path: Path | None,
                   interp: int, direction: str, pairs: bool | None, sheet_rows: int, seed: int, raw_weights: bool,
                   device: str | None, out_dir: Path | None, trust_plugins: bool = False) -> None:
    """Translate input images with a trained model: many outputs per input, grids and an index.html."""
    from ganzoo.inference import (
        generate,
        interpolate_latents,
        list_inputs,
        load,
        load_input_images,
        model_nz,
        random_latents,
    )

    console = Console(stderr=True)
    model = load(run_or_checkpoint, device=device, ema=not raw_weights, trust_checkpoint_plugins=trust_plugins,
                 command="sample", warn=console_warning(console))
    recipe = model.recipe
    nz = model_nz(model)
    is_cyclegan = "G_A" in model.networks
    if direction != "AtoB" and not is_cyclegan:
        raise GanzooError("--direction BtoA needs a CycleGAN model; this one translates one way only",
                          hint="train with data.direction=BtoA for the other way")
    if nz == 0 and (encode_path is not None or interp):
        raise GanzooError(f"--encode and --interp need a model with a latent code; {recipe.model.type} has none")
    if encode_path is not None and "E" not in model.networks:
        raise GanzooError("--encode needs a model with an encoder E (BicycleGAN)")
    # The input half of a pair is the side the model was trained to read (data.direction); CycleGAN
    # data is unaligned, so --direction only picks its generator.
    half = direction if is_cyclegan else recipe.data.direction
    other = "BtoA" if half == "AtoB" else "AtoB"
    paths = list_inputs(input_path)
    inputs = load_input_images(paths, model, pairs=pairs, direction=half)
    target_nc = int(model.networks["E"].input_nc) if "E" in model.networks else _output_channels(model)
    targets = _pair_targets(paths, model, pairs, other, target_nc)
    encoded_code = None
    if encode_path is not None:
        target = load_input_images(list_inputs(encode_path)[:1], model, channels=target_nc, pairs=pairs,
                                   direction=other)[0][1]
        encoded_code = model.encode(target.unsqueeze(0)).cpu()
    out_dir = out_dir or default_out_dir(run_or_checkpoint, input_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    shared = random_latents(num_z, nz, seed) if nz and sync_z else None
    interp_codes = interpolate_latents(*random_latents(2, nz, seed + 1), interp) if nz and interp else None

    rows: list[dict[str, object]] = []
    sheet_columns: list[list[torch.Tensor]] = []
    used_names: set[str] = set()
    for index, (path, image) in enumerate(inputs):
        name = path.stem if path.stem not in used_names else f"{path.stem}_{index}"
        used_names.add(name)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        A = image.unsqueeze(0)
        _save(image, folder / "input.png")
        if nz:
            z = shared if shared is not None else random_latents(num_z, nz, seed + 1000 * (index + 1))
            outputs = list(generate(model, A, z.to(model.device))[0].cpu())
        else:
            outputs = list(generate(model, A, direction=direction)[0].cpu())
        for k, out in enumerate(outputs):
            _save(out, folder / f"sample_{k:02d}.png")
        grid = [image] + outputs
        if encoded_code is not None:
            encoded = generate(model, A, encoded_code.to(model.device))[0, 0].cpu()
            _save(encoded, folder / "encoded.png")
            grid.append(encoded)
        _grid(grid, folder / "grid.png")
        if index < sheet_rows:
            target = targets.get(index)
            own = (generate(model, A, model.encode(target.unsqueeze(0)).to(model.device))[0, 0].cpu()
                   if target is not None and "E" in model.networks and nz else None)
            sheet_columns.append([image, target, own, encoded if encoded_code is not None else None, *outputs])
        row: dict[str, object] = {"name": name, "grid": f"{name}/grid.png"}
        if interp_codes is not None:
            frames = list(generate(model, A, interp_codes.to(model.device))[0].cpu())
            _grid(frames, folder / "interp.png")
            _gif(frames, folder / "interp.gif")
            row["gif"] = f"{name}/interp.gif"
        rows.append(row)
    title = f"ganzoo sample: {recipe.name} step {model.step}"
    sheet_path = write_sheet(out_dir / "sheet.png", sheet_columns, model, nz=nz, shared=shared is not None,
                             direction=direction, title=f"{recipe.name} step {model.step}: {input_path.name}")
    index_path = write_index(out_dir, rows, title, sheet="sheet.png")
    per_input = len(outputs) + (1 if encoded_code is not None else 0)
    console.print(f"[green]done[/]: {len(inputs)} input(s) x {per_input} output(s) -> {out_dir}; labelled sheet "
                  f"{sheet_path}; browse {index_path}", highlight=False, soft_wrap=True)
