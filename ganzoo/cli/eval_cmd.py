"""``ganzoo eval RUN_OR_CHECKPOINT [--data ROOT] [--split val] [--metrics a,b] [--json]``."""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ganzoo.cli.app import main
from ganzoo.cli.options import console_warning, raw_weights_option, trust_plugins_option


def _format(value: float) -> str:
    return f"{value:.4g}"


@main.command("eval")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_root", type=click.Path(path_type=Path), help="Dataset folder (default: the recipe's).")
@click.option("--split", default="val", show_default=True, help="Split folder to evaluate on.")
@click.option("--metrics", "metric_list", default=None,
              help="Comma-separated metric names (default: every metric that applies; see `ganzoo list metric`).")
@click.option("--num-inputs", default=100, show_default=True, type=click.IntRange(min=1),
              help="Number of inputs (the first N of the split).")
@click.option("--num-z", default=20, show_default=True, type=click.IntRange(min=1),
              help="Random codes per input (models with a latent code).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random codes.")
@raw_weights_option
@trust_plugins_option
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB", show_default=True,
              help="CycleGAN: evaluate G_A on domain A (AtoB) or G_B on domain B (BtoA).")
@click.option("--lpips-net", type=click.Choice(["alex", "vgg", "squeeze"]), default="alex", show_default=True,
              help="LPIPS backbone for diversity.")
@click.option("--lpips-version", type=click.Choice(["0.0", "0.1"]), default="0.0", show_default=True,
              help="LPIPS version (the BicycleGAN paper used 0.0; 0.1 gives about twice the value).")
@click.option("--lpips-weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Local file of the LPIPS backbone's ImageNet weights (default: the torch hub cache).")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Local file of the InceptionV3 weights for FID/KID (default: the torch hub cache).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: the recipe's train.device rule).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON on stdout.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON result to this file.")
@click.option("--tensorboard", "tb_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the scores as eval/* scalars to this TensorBoard log folder.")
def eval_command(run_or_checkpoint: Path, data_root: Path | None, split: str, metric_list: str | None,
                 num_inputs: int, num_z: int, seed: int, raw_weights: bool, direction: str, lpips_net: str,
                 lpips_version: str, lpips_weights: Path | None, inception_weights: Path | None,
                 device: str | None, as_json: bool, out_file: Path | None, tb_dir: Path | None,
                 trust_plugins: bool = False) -> None:
    """Score a trained model on a data split: diversity, realism, faithfulness, shapes-world coverage."""
    from ganzoo.evaluation import evaluate, log_to_tensorboard
    from ganzoo.inference import load

    console = Console(stderr=True)
    inception = str(inception_weights) if inception_weights else None
    options = {
        "diversity": {"net": lpips_net, "version": lpips_version,
                      "backbone_weights": str(lpips_weights) if lpips_weights else None},
        "fid": {"inception_weights": inception},
        "kid": {"inception_weights": inception},
    }
    metrics = metric_list.split(",") if metric_list else None
    model = load(run_or_checkpoint, device=device, ema=not raw_weights, trust_checkpoint_plugins=trust_plugins,
                 command="eval", warn=console_warning(console))
    result = evaluate(model, data_root=data_root, split=split, metrics=metrics, num_inputs=num_inputs,
                      num_z=num_z, seed=seed, direction=direction, metric_options=options, device=device)
    text = json.dumps(result, indent=2)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text + "\n", encoding="utf-8")
    if tb_dir is not None:
        log_to_tensorboard(result, tb_dir)
    if as_json:
        click.echo(text)
        return
    protocol = result["protocol"]
    table = Table(title=f"{result['model']} step {result['step']}: {protocol['split']} split, "
                        f"{protocol['num_inputs']} inputs x {protocol['num_z']} z")
    table.add_column("metric")
    table.add_column("score")
    table.add_column("value", justify="right")
    for name, values in result["metrics"].items():
        for key, value in values.items():
            if key != "info":
                table.add_row(name, key, _format(value))
    Console().print(table)
    for name, message in result["unavailable"].items():
        console.print(f"[yellow]{name} not measured:[/] {message}", highlight=False)
    if result["skipped"]:
        console.print("not applicable: " + ", ".join(f"{k} ({v})" for k, v in result["skipped"].items()),
                      highlight=False)
