"""``ganzoo sample RUN_OR_CHECKPOINT --input PATH [--num-z N] [--sync-z] [--encode TARGET] [--interp STEPS]``.

For every input image: N outputs from random codes (the same codes for every input with
``--sync-z``), optionally the output for the code encoded from a target image, optionally a
strip and a GIF walking the code space; PNGs, a grid per input and an ``index.html`` to browse.
pix2pix and CycleGAN give one output per input (``--direction`` picks CycleGAN's generator).
"""
from __future__ import annotations

import html
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


def write_index(out_dir: Path, rows: list[dict[str, object]], title: str) -> Path:
    """An ``index.html`` showing each input's grid, outputs and interpolation."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif} img{image-rendering:pixelated;margin:2px} "
             "td{vertical-align:top;padding:4px}</style>",
             f"<h1>{html.escape(title)}</h1><table>"]
    for row in rows:
        cells = [f"<td><b>{html.escape(str(row['name']))}</b><br><img src='{html.escape(str(row['grid']))}'></td>"]
        if row.get("gif"):
            cells.append(f"<td>interpolation<br><img src='{html.escape(str(row['gif']))}'></td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


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
@click.option("--pairs", is_flag=True, help="Inputs are A|B side-by-side images: use only the input half.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random codes.")
@raw_weights_option
@trust_plugins_option
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: the recipe's train.device rule).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: samples/<run name>).")
def sample_command(run_or_checkpoint: Path, input_path: Path, num_z: int, sync_z: bool, encode_path: Path | None,
                   interp: int, direction: str, pairs: bool, seed: int, raw_weights: bool, device: str | None,
                   out_dir: Path | None, trust_plugins: bool = False) -> None:
    """Translate input images with a trained model: many outputs per input, grids and an index.html."""
    from ganzoo.inference import (
        generate,
        input_channels,
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
    out_dir = out_dir or Path("samples") / safe_folder_name(recipe.name, Path(run_or_checkpoint).stem)
    out_dir.mkdir(parents=True, exist_ok=True)

    channels = input_channels(model, direction)
    inputs = load_input_images(list_inputs(input_path), recipe, channels=channels, pairs=pairs, direction=direction)
    encoded_code = None
    if encode_path is not None:
        target_nc = int(model.networks["E"].input_nc)
        target = load_input_images(list_inputs(encode_path)[:1], recipe, channels=target_nc, pairs=pairs,
                                   direction="BtoA" if direction == "AtoB" else "AtoB")[0][1]
        encoded_code = model.encode(target.unsqueeze(0)).cpu()
    shared = random_latents(num_z, nz, seed) if nz and sync_z else None
    interp_codes = interpolate_latents(*random_latents(2, nz, seed + 1), interp) if nz and interp else None

    rows: list[dict[str, object]] = []
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
        row: dict[str, object] = {"name": name, "grid": f"{name}/grid.png"}
        if interp_codes is not None:
            frames = list(generate(model, A, interp_codes.to(model.device))[0].cpu())
            _grid(frames, folder / "interp.png")
            _gif(frames, folder / "interp.gif")
            row["gif"] = f"{name}/interp.gif"
        rows.append(row)
    index_path = write_index(out_dir, rows, f"ganzoo sample: {recipe.name} step {model.step}")
    per_input = len(outputs) + (1 if encoded_code is not None else 0)
    console.print(f"[green]done[/]: {len(inputs)} input(s) x {per_input} output(s) -> {out_dir}; "
                  f"browse {index_path}")
