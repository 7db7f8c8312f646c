"""``ganzoo bench RECIPE [--steps N] [--warmup K] [--set ...] [--peak-tflops T] [--json]``."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ganzoo.cli.app import main
from ganzoo.cli.options import recipe_argument, set_option


@main.command("bench")
@recipe_argument
@set_option
@click.option("--steps", default=10, show_default=True, type=click.IntRange(min=1), help="Timed training steps.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0),
              help="Untimed steps first (allocator and kernel caches, torch.compile).")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The device's peak TFLOP/s for the fraction-of-peak figure (default: known or estimated).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's).")
@click.option("--no-flops", is_flag=True, help="Skip the FLOP count (one extra untimed step).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as one JSON object.")
def bench_command(recipe: str, overrides: tuple[str, ...], steps: int, warmup: int, peak_tflops: float | None,
                  threads: int | None, no_flops: bool, as_json: bool) -> None:
    """Time the real training step of RECIPE on synthetic tensors of its shapes (no dataset needed)."""
    import torch

    from ganzoo.bench import run_benchmark
    from ganzoo.cli.options import recipe_with_plugins

    if threads is not None:
        torch.set_num_threads(threads)
    resolved = recipe_with_plugins(recipe, list(overrides))
    result = run_benchmark(resolved, steps=steps, warmup=warmup, count_flops=not no_flops,
                           peak_tflops=peak_tflops, source=recipe)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"ganzoo bench {recipe}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    flags = [result.precision] + (["channels_last"] if result.channels_last else []) + \
        (["compiled"] if result.compiled else []) + result.accelerators
    rows = [
        ("model", f"{result.model}, batch {result.batch_size}, {result.image_size} px, {', '.join(flags)}"),
        ("device", f"{result.device}, {result.threads} threads"),
        ("s/step", f"median {result.median_s:.4f}  min {result.min_s:.4f}  max {result.max_s:.4f}"
                   f"  ({result.steps} steps after {result.warmup} warm-up)"),
        ("images/s", f"{result.images_per_s:.2f}"),
        ("peak memory", f"{result.peak_memory_bytes / 2**20:,.0f} MiB ({result.memory_kind})"),
    ]
    if result.flops_per_step:
        rows.append(("FLOP/step", f"{result.flops_per_step / 1e9:,.2f} GFLOP"))
        rows.append(("achieved", f"{result.achieved_tflops * 1000:,.1f} GFLOP/s"))
    if result.fraction_of_peak is not None:
        rows.append(("of peak", f"{100 * result.fraction_of_peak:.1f}% of {result.peak_tflops * 1000:,.0f} "
                                f"GFLOP/s ({result.peak_source})"))
    if result.warning:
        rows.append(("warning", result.warning))
    for row in rows:
        table.add_row(*row)
    Console().print(table)
