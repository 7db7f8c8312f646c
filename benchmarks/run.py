"""Run ``ganzoo bench`` on every benchmark recipe (and the official code side by side) and write a Markdown table.

    python benchmarks/run.py --steps 5 --rounds 3 --out benchmarks/results.md \\
        --official-p2p ~/src/pytorch-CycleGAN-and-pix2pix --official-bicyclegan ~/src/BicycleGAN \\
        [--accelerator cpu_kernels] [--device cuda]

Each case runs in fresh processes (peak RSS is per process), alternating ganzoo and official
rounds: on a shared machine the load drifts, so the ratio of medians taken in the same run is the
trustworthy figure, not the absolute seconds. Without the official paths only ganzoo is timed.

``--accelerator NAME`` (repeatable) runs ganzoo with that accelerator plugin on
(``--set train.accelerators=[NAME, ...]``), e.g. ``cpu_kernels`` after
``pip install plugins/ganzoo-cpu-kernels``; without it ganzoo runs with PyTorch's own kernels. An
entry may carry arguments as YAML, ``--accelerator "{type: cpu_kernels, cache: null}"``. The table
says which accelerators each case ran with.

``--device cuda`` times both on the GPU: ganzoo with ``--set train.device=cuda``, the official code with
``--gpu`` (its ``--gpu_ids 0``); peak memory is then the CUDA allocator's peak instead of the RSS.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
#: Benchmark case -> which official checkout times it (``official.py`` knows the flags).
CASES = {"pix2pix_256": "p2p", "pix2pix_128": "p2p", "cyclegan_256": "p2p", "cyclegan_128": "p2p",
         "bicyclegan_256": "bicyclegan", "bicyclegan_128": "bicyclegan"}


def accelerator_overrides(accelerators: list[str]) -> list[str]:
    """The ``ganzoo bench`` arguments that switch ``accelerators`` on (none for an empty list)."""
    return ["--set", f"train.accelerators=[{', '.join(accelerators)}]"] if accelerators else []


def device_label(device: str) -> str:
    """How the table names the device: the GPU's name on CUDA."""
    if device == "cuda" and torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name(0)})"
    return device.upper()


def run_json(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating ganzoo/official rounds per case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both sides train")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="passed to ganzoo bench")
    parser.add_argument("--accelerator", dest="accelerators", action="append", default=[], metavar="NAME",
                        help="an accelerator plugin for ganzoo (repeatable), e.g. cpu_kernels; default: none")
    parser.add_argument("--official-p2p", help="checkout of SsnL/pytorch-CycleGAN-and-pix2pix (pytorch04)")
    parser.add_argument("--official-bicyclegan", help="checkout of junyanz/BicycleGAN")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    roots = {"p2p": args.official_p2p, "bicyclegan": args.official_bicyclegan}

    rows = []
    for case in args.cases:
        ours_cmd = [sys.executable, "-m", "ganzoo", "bench", str(HERE / f"{case}.yaml"), "--steps", str(args.steps),
                    "--warmup", str(args.warmup), "--threads", str(args.threads), "--json",
                    "--set", f"train.device={args.device}",
                    *accelerator_overrides(args.accelerators)]
        for item in args.overrides:
            ours_cmd += ["--set", item]
        root = roots[CASES[case]]
        official_cmd = None if not root else [
            sys.executable, str(HERE / "official.py"), "--root", root, "--case", case, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--threads", str(args.threads), "--json",
            *(["--gpu"] if args.device == "cuda" else [])]
        ours, official = [], []
        for r in range(args.rounds):
            # Alternate who goes first so a load change penalises both sides alike.
            order = [("ours", ours_cmd), ("official", official_cmd)]
            for who, cmd in (order if r % 2 == 0 else order[::-1]):
                if cmd is not None:
                    (ours if who == "ours" else official).append(run_json(cmd))
                    print(f"{case} round {r + 1} {who}: {(ours if who == 'ours' else official)[-1]['median_s']:.3f} "
                          "s/step", file=sys.stderr, flush=True)
        rows.append((case, ours, official))

    memory = "CUDA allocated" if args.device == "cuda" else "RSS"
    lines = [f"# ganzoo benchmark results ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"torch {torch.__version__}, {device_label(args.device)}, {args.threads} threads, "
             f"{args.steps} timed steps after {args.warmup} "
             f"warm-up, {args.rounds} alternating rounds per case; s/step is the median of the round medians.",
             f"Accelerators asked for: {', '.join(args.accelerators) or 'none'}. "
             f"Extra overrides: {' '.join(args.overrides) or 'none'}.", "",
             "| case | ganzoo accelerators | ganzoo s/step | official s/step | speed-up | ganzoo GFLOP/s "
             f"| ganzoo peak {memory} MiB | official peak {memory} MiB |", "|---|---|---|---|---|---|---|---|"]
    for case, ours, official in rows:
        ours_s = statistics.median(o["median_s"] for o in ours)
        gflops = statistics.median(o["flops_per_step"] / o["median_s"] / 1e9 for o in ours)
        ours_mem = max(o["peak_memory_mib"] for o in ours)
        if official:
            off_s = statistics.median(o["median_s"] for o in official)
            off_mem = max(o["peak_memory_mib"] for o in official)
            cells = [f"{off_s:.3f}", f"{off_s / ours_s:.2f}x", f"{gflops:.1f}", f"{ours_mem:.0f}", f"{off_mem:.0f}"]
        else:
            cells = ["-", "-", f"{gflops:.1f}", f"{ours_mem:.0f}", "-"]
        # what ganzoo bench reports it applied, which an explicit --set train.accelerators=... may change
        applied = sorted({name for o in ours for name in o.get("accelerators", [])})
        lines.append(f"| {case} | {', '.join(applied) or 'none'} | {ours_s:.3f} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
