"""``ganzoo export RUN_OR_CHECKPOINT --format torchscript|onnx``: the generator, ready for use elsewhere."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ganzoo.cli.app import main
from ganzoo.cli.options import raw_weights_option, trust_plugins_option


@main.command("export")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["torchscript", "onnx"]), default="torchscript",
              show_default=True, help="onnx needs the optional extra: pip install \"ganzoo[onnx]\".")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: RUN/export/<G>.pt or .onnx).")
@click.option("--dropout", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="eval: dropout off (deterministic); train: dropout on, as the official pix2pix test code runs.")
@click.option("--batch-stats", type=click.Choice(["auto", "running", "batch"]), default="auto", show_default=True,
              help="Batch norm at inference: running statistics, or the batch's own (official train-mode test). "
                   "auto: batch with --dropout train, running otherwise.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB", show_default=True,
              help="CycleGAN: AtoB exports G_A, BtoA exports G_B.")
@click.option("--size", type=click.IntRange(min=1), help="Image side for tracing and the parity check "
              "(default: the recipe's training input size).")
@raw_weights_option
@trust_plugins_option
def export_command(run_or_checkpoint: Path, fmt: str, out: Path | None, dropout: str, batch_stats: str,
                   direction: str, size: int | None, raw_weights: bool, trust_plugins: bool = False) -> None:
    """Export the generator of a run folder or checkpoint, then check it against PyTorch.

    Formats: onnx (recommended for runtimes outside PyTorch: onnxruntime, TensorRT ...) and torchscript
    (C++/libtorch; PyTorch marks it deprecated, and its deprecation warning is filtered out here).
    """
    from ganzoo.export import PARITY_TOLERANCE, export_generator

    console = Console(soft_wrap=True)
    result = export_generator(run_or_checkpoint, fmt, out=out, dropout=dropout, batch_stats=batch_stats,
                              direction=direction, size=size, ema=not raw_weights,
                              trust_checkpoint_plugins=trust_plugins)
    inputs = "x (N, {}, H, W)".format(result.input_shape[1]) + (f", z (N, {result.nz})" if result.nz else "")
    console.print(f"[green]exported[/] {result.network} as {result.format} to {result.path}")
    console.print(f"inputs: {inputs}, values in [-1, 1]; dropout {result.dropout}, batch norm statistics "
                  f"{result.batch_stats}; contract in {result.metadata_path}")
    if result.format == "torchscript":
        # The export itself runs with torch's TorchScript deprecation warnings filtered out; loading the
        # file elsewhere (torch.jit.load) shows them, so say which format to choose.
        console.print("[dim]note: PyTorch marks TorchScript deprecated (torch.jit.load warns); it is the format "
                      "for C++/libtorch. Recommended for other runtimes: --format onnx; in Python, "
                      "ganzoo.load(run) needs no export.[/]")
    if result.parity_ok is None:
        console.print(f"[yellow]parity:[/] {result.parity_note}")
    elif result.parity_ok:
        console.print(f"[green]parity ok:[/] {result.parity_note} (tolerance {PARITY_TOLERANCE:g})")
    else:
        console.print(f"[bold red]parity FAILED:[/] {result.parity_note} (tolerance {PARITY_TOLERANCE:g})")
        raise SystemExit(1)
