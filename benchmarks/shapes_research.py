"""Reproduce the BicycleGAN shapes-world evidence of docs/results.md.

For each model recipe (BicycleGAN, pix2pix+noise) and seed, train with the normal Trainer, keep a
checkpoint every ``--checkpoint-every`` steps, score every checkpoint with the issue's protocol
(``mode_coverage`` on the first 30 val inputs x 16 random codes) and write tables of mean and spread
over seeds per step. An ablation grid (encoder type x z injection, the same data and budget) follows.

Time is measured in training steps, not wall-clock seconds, because the machine may be shared:
``--measure-cost`` times the recipe's real training step on one CPU thread (process CPU time, which
other processes on the machine barely change) and converts a wall-clock budget into a step budget.

    python benchmarks/shapes_research.py --out runs/shapes_research --seeds 0,1,2 --jobs 2
    python benchmarks/shapes_research.py --measure-cost           # s/step and the 15-minute step budget

Re-running skips finished runs and evaluations (cached in ``RUN/coverage.json``) and resumes
unfinished runs from their last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
#: The models compared, by table label.
MODELS: dict[str, str] = {
    "BicycleGAN": str(RECIPES / "shapes_bicyclegan.yaml"),
    "pix2pix+noise": str(RECIPES / "shapes_pix2pix_noise.yaml"),
}
#: The ablation grid of the issue: encoder type x where z enters the generator, as {axis key: {label: value}}.
#: A mapping value replaces the recipe's node but keeps its arguments named in KEPT_ARGUMENTS (width, norm,
#: code layout...), so the two encoders differ in their family and depth alone: both end on the 4x4 map
#: the recipe's 4x4 z_grid needs at 32 px.
ABLATION: dict[str, dict[str, Any]] = {
    "model.networks.E": {"conv": {"type": "conv", "n_layers": 3}, "resnet": {"type": "resnet", "n_blocks": 3}},
    "model.networks.G.inject": {"input": "input", "all": "all"},
}
KEPT_ARGUMENTS = ("input_nc", "nz", "nef", "norm", "nl", "vae", "z_grid")
SCORES = ("mode_coverage", "on_palette", "same_colour_fraction", "colours_per_input", "nearest_colour_coverage",
          "same_nearest_colour_fraction")


@dataclass
class Job:
    """One training run: a recipe, its overrides, and where it trains."""

    label: str
    recipe: str
    overrides: list[str]
    folder: Path
    settings: dict[str, str] = field(default_factory=dict)


# -- cost -------------------------------------------------------------------------------------------
def step_cost(recipe_path: str, overrides: Sequence[str] = (), steps: int = 6, warmup: int = 2) -> dict[str, float]:
    """CPU seconds per training step on ONE thread (process time, robust to other load) and wall seconds."""
    import torch

    from ganzoo.bench import build_parts, synthetic_batch
    from ganzoo.recipe import prepare_recipe

    torch.set_num_threads(1)
    recipe = prepare_recipe(recipe_path, overrides=[*overrides, "train.device=cpu"])
    device = torch.device("cpu")
    parts = build_parts(recipe, device)
    batch = synthetic_batch(recipe, parts.model, device)
    for _ in range(warmup):
        parts.step(batch)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        parts.step(batch)
    return {"cpu_s_per_step": (time.process_time() - cpu) / steps, "wall_s_per_step": (time.perf_counter() - wall) / steps}


# -- training and evaluation ------------------------------------------------------------------------
def _summary(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def train(job: Job, threads: int = 1) -> str:
    """Train ``job`` (skip when finished, resume when a checkpoint exists); returns what happened."""
    import torch

    from ganzoo.recipe import prepare_recipe
    from ganzoo.training.trainer import NonFiniteLoss, Trainer

    torch.set_num_threads(threads)
    recipe = prepare_recipe(job.recipe, overrides=job.overrides)
    summary = _summary(job.folder)
    if summary and summary.get("step") == summary.get("total_steps") == recipe.train.max_steps:
        return "finished"
    resume = (job.folder / "checkpoints" / "latest.pt").is_file()
    try:
        Trainer(recipe, job.folder, resume=resume, show_progress=False).run()
    except NonFiniteLoss:
        return "diverged"
    return "resumed" if resume else "trained"


def evaluate_checkpoints(folder: Path, num_inputs: int, num_z: int) -> dict[int, dict[str, float]]:
    """``mode_coverage`` scores of every ``step_N.pt`` of a run, cached in ``RUN/coverage.json``."""
    from ganzoo.evaluation import evaluate
    from ganzoo.inference import load

    cache_file = folder / "coverage.json"
    protocol = {"num_inputs": num_inputs, "num_z": num_z, "split": "val", "seed": 0}
    cache: dict[str, Any] = {}
    if cache_file.is_file():
        cache = json.loads(cache_file.read_text())
        if cache.get("protocol") != protocol:
            cache = {}
    scores: dict[str, dict[str, float]] = cache.get("scores", {})
    for path in sorted((folder / "checkpoints").glob("step_*.pt")):
        step = str(int(path.stem.split("_")[1]))
        if all(key in scores.get(step, {}) for key in SCORES):
            continue
        result = evaluate(load(path, device="cpu"), metrics=["mode_coverage"], num_inputs=num_inputs, num_z=num_z,
                          seed=0, split="val")
        scores[step] = {k: float(v) for k, v in result["metrics"]["mode_coverage"].items() if k in SCORES}
        cache_file.write_text(json.dumps({"protocol": protocol, "scores": scores}, indent=1))
    return {int(k): v for k, v in scores.items()}


def run_job(args: tuple[Job, int, int, int]) -> tuple[str, str, dict[int, dict[str, float]], float]:
    """Train then evaluate one job (a worker process's unit of work)."""
    job, threads, num_inputs, num_z = args
    import torch

    torch.set_num_threads(threads)
    started = time.process_time()
    try:
        status = train(job, threads)
    except Exception as error:  # one broken run must not lose the others' tables
        print(f"{job.folder.name}: failed: {error!r}", flush=True)
        return str(job.folder), f"failed: {error}", {}, time.process_time() - started
    cpu = time.process_time() - started
    scores = evaluate_checkpoints(job.folder, num_inputs, num_z) if status != "diverged" else {}
    print(f"{job.folder.name}: {status} ({cpu:.0f} CPU s), coverage by step "
          f"{ {s: round(v['mode_coverage'], 2) for s, v in sorted(scores.items())} }", flush=True)
    return str(job.folder), status, scores, cpu


def report_job(job: Job, num_inputs: int, num_z: int) -> tuple[str, str, dict[int, dict[str, float]], float]:
    """Score the checkpoints a run has so far, without training (``--report-only``)."""
    if not (job.folder / "checkpoints").is_dir():
        return str(job.folder), "not started", {}, 0.0
    summary = _summary(job.folder)
    status = "finished" if summary and summary.get("step") == summary.get("total_steps") else "unfinished"
    return str(job.folder), status, evaluate_checkpoints(job.folder, num_inputs, num_z), 0.0


# -- data reference ---------------------------------------------------------------------------------
def data_same_colour_fraction(recipe_path: str, overrides: Sequence[str] = ()) -> float:
    """Fraction of multi-shape training targets whose shapes all share one colour (the data's own figure)."""
    from ganzoo.data.shapes import ensure_shapes, load_meta
    from ganzoo.recipe import prepare_recipe

    recipe = prepare_recipe(recipe_path, overrides=overrides)
    root = ensure_shapes(recipe.data.root, **recipe.data.shapes.to_dict())
    multi = [r for r in load_meta(root, "train") if len(r["shapes"]) > 1]
    same = sum(len({s["colour_index"] for s in r["shapes"]}) == 1 for r in multi)
    return same / len(multi) if multi else 0.0


# -- tables -----------------------------------------------------------------------------------------
def _spread(values: Sequence[float]) -> str:
    values = [v for v in values if v == v]  # NaN: not measured
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f} ({min(values):.2f}-{max(values):.2f})"


# Table columns: score key -> header. "nearest colour" scores give each shape its nearest palette colour
# (no tolerance): coverage there is diversity alone, the gap to mode coverage is colour precision.
SCORE_COLUMNS = {
    "mode_coverage": "mode coverage",
    "nearest_colour_coverage": "coverage, nearest colour",
    "on_palette": "on palette",
    "same_colour_fraction": "all shapes one colour (on palette)",
    "same_nearest_colour_fraction": "all shapes one nearest colour",
}


def _score_cells(rows: list[dict[str, float]]) -> str:
    return " | ".join(_spread([r.get(key, float("nan")) for r in rows]) for key in SCORE_COLUMNS)


def trajectory_table(results: dict[str, dict[int, dict[int, dict[str, float]]]], cost: dict[str, float] | None
                     ) -> str:
    """Markdown: one row per (model, step): mean ± sd (min-max) over seeds of each score."""
    lines = ["| model | step | CPU min (1 thread) | seeds | " + " | ".join(SCORE_COLUMNS.values()) + " |",
             "|" + "---|" * (4 + len(SCORE_COLUMNS))]
    for label, by_seed in results.items():
        steps = sorted({s for scores in by_seed.values() for s in scores})
        for step in steps:
            rows = [scores[step] for scores in by_seed.values() if step in scores]
            minutes = f"{step * cost[label] / 60:.1f}" if cost and label in cost else "-"
            lines.append(f"| {label} | {step} | {minutes} | {len(rows)} | {_score_cells(rows)} |")
    return "\n".join(lines)


def ablation_table(rows: list[tuple[dict[str, str], dict[int, dict[str, float]]]]) -> str:
    """Markdown: one row per grid cell at the last step every run reached (mean ± sd over the seeds run)."""
    keys = list(ABLATION)
    lines = ["| " + " | ".join(_axis_name(k) for k in keys)
             + " | step | seeds | " + " | ".join(SCORE_COLUMNS.values()) + " |",
             "|" + "---|" * (len(keys) + 2 + len(SCORE_COLUMNS))]
    # Every cell at the same step: the last one all runs have reached.
    common = set.intersection(*(set(scores) for _, scores in rows)) if rows else set()
    step = max(common) if common else None
    cells: dict[tuple[str, ...], list[dict[str, float]]] = {}
    for settings, scores in rows:
        cells.setdefault(tuple(settings[k] for k in keys), []).append(scores[step] if step is not None else {})
    for cell, found in cells.items():
        found = [r for r in found if r]
        lines.append("| " + " | ".join(cell) + f" | {step} | {len(found)} | {_score_cells(found)} |")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------
def plan(out: Path, seeds: Sequence[int], steps: int, checkpoint_every: int, extra: Sequence[str],
         ablation_seeds: Sequence[int], models: dict[str, str]) -> tuple[list[Job], list[Job]]:
    """The model-comparison jobs and the ablation jobs."""
    common = [f"train.max_steps={steps}", f"log.checkpoint_every={checkpoint_every}",
              f"log.keep_last={steps // checkpoint_every + 1}", f"log.samples_every={checkpoint_every}",
              f"log.every={min(50, checkpoint_every)}", *extra]
    compare = [Job(label, recipe, [*common, f"train.seed={seed}"], out / "runs" / f"{_slug(label)}_seed{seed}",
                   {"seed": str(seed)})
               for label, recipe in models.items() for seed in seeds]
    ablate: list[Job] = []
    recipe = _resolved(models["BicycleGAN"], extra)
    keys = list(ABLATION)
    first, second = (ABLATION[k] for k in keys)
    own = [_own_label(recipe, key) for key in keys]
    for a in first:
        for b in second:
            for seed in ablation_seeds:
                settings = {keys[0]: a, keys[1]: b}
                same = next((job for job in compare if job.label == "BicycleGAN" and job.settings["seed"] == str(seed)),
                            None)
                if same is not None and [a, b] == own:
                    # The recipe's own cell: the comparison run already trains it.
                    ablate.append(Job(same.label, same.recipe, same.overrides, same.folder,
                                      {**settings, "seed": str(seed)}))
                    continue
                name = f"{_axis_name(keys[0])}={a}__{_axis_name(keys[1])}={b}_seed{seed}"
                ablate.append(Job("BicycleGAN", models["BicycleGAN"],
                                  [*common, _override(recipe, keys[0], a), _override(recipe, keys[1], b),
                                   f"train.seed={seed}"],
                                  out / "ablation" / name, {**settings, "seed": str(seed)}))
    return compare, ablate


def _resolved(recipe_path: str, overrides: Sequence[str]) -> dict[str, Any]:
    from ganzoo.recipe import prepare_recipe

    return prepare_recipe(recipe_path, overrides=overrides).to_dict()


def _node(recipe: dict[str, Any], key: str) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = node[part]
    return node


def _axis_name(key: str) -> str:
    return {"model.networks.E": "E", "model.networks.G.inject": "inject"}.get(key, key.split(".")[-1])


def _override(recipe: dict[str, Any], key: str, label: str) -> str:
    """The ``KEY=VALUE`` override that puts the ablation value ``label`` of axis ``key`` into ``recipe``."""
    value = ABLATION[key][label]
    if isinstance(value, dict):
        kept = {k: v for k, v in _node(recipe, key).items() if k in KEPT_ARGUMENTS}
        value = {**kept, **value}
    return f"{key}={json.dumps(value)}"


def _own_label(recipe: dict[str, Any], key: str) -> str | None:
    """The label of axis ``key`` whose value the recipe already has (None: none of them)."""
    node = _node(recipe, key)
    for label, value in ABLATION[key].items():
        if (all(node.get(k) == v for k, v in value.items()) if isinstance(value, dict) else node == value):
            return label
    return None


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/shapes_research"))
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the model comparison")
    parser.add_argument("--ablation-seeds", default="0", help="seeds of each ablation cell ('' skips the grid)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's max_steps)")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--num-inputs", type=int, default=30)
    parser.add_argument("--num-z", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (one process each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override applied to every run (repeatable)")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="wall-clock budget converted into steps by --measure-cost")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: score the checkpoints the runs have so far and write the tables")
    parser.add_argument("--only", choices=("compare", "ablation"), default=None,
                        help="train and report only the model comparison or only the ablation grid")
    parser.add_argument("--measure-cost", action="store_true",
                        help="only time each recipe's training step (1 thread) and print the step budget")
    args = parser.parse_args(argv)

    from ganzoo.recipe import prepare_recipe

    models = dict(MODELS)
    if args.measure_cost:
        for label, recipe in models.items():
            cost = step_cost(recipe, args.extra)
            budget = int(args.budget_minutes * 60 / cost["cpu_s_per_step"])
            print(f"{label}: {cost['cpu_s_per_step']:.3f} CPU s/step on 1 thread (wall {cost['wall_s_per_step']:.3f} s "
                  f"under the current load) -> {args.budget_minutes:g} min = {budget} steps", flush=True)
        return 0

    steps = args.steps or int(prepare_recipe(models["BicycleGAN"], overrides=args.extra)["train"]["max_steps"])
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ablation_seeds = [int(s) for s in args.ablation_seeds.split(",") if s.strip()]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    compare, ablate = plan(out, seeds, steps, args.checkpoint_every, args.extra, ablation_seeds, models)
    jobs = list({str(job.folder): job for job in compare + ablate}.values())
    if args.only == "ablation":  # e.g. beside another invocation that trains the comparison
        compared = {job.folder for job in compare}
        jobs = [job for job in jobs if job.folder not in compared]
        compare = []
    elif args.only == "compare":
        jobs, ablate = compare, []
    data_same = data_same_colour_fraction(models["BicycleGAN"], args.extra)  # generates the data before the workers
    work = [(job, args.threads, args.num_inputs, args.num_z) for job in jobs]
    if args.report_only:
        done = [report_job(job, args.num_inputs, args.num_z) for job in jobs]
    elif args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            done = pool.map(run_job, work, chunksize=1)
    else:
        done = [run_job(w) for w in work]
    by_folder = {folder: (status, scores, cpu) for folder, status, scores, cpu in done}

    cost = {label: step_cost(recipe, args.extra, steps=3, warmup=1)["cpu_s_per_step"] for label, recipe in models.items()}
    results: dict[str, dict[int, dict[int, dict[str, float]]]] = {}
    for job in compare:
        results.setdefault(job.label, {})[int(job.settings["seed"])] = by_folder[str(job.folder)][1]
    # A cell trained elsewhere (the recipe's own, by the comparison): score the checkpoints it has.
    ablation_rows = [({**job.settings}, by_folder[str(job.folder)][1] if str(job.folder) in by_folder
                      else evaluate_checkpoints(job.folder, args.num_inputs, args.num_z)) for job in ablate]

    report = [
        f"Command: `python benchmarks/shapes_research.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Protocol: mode_coverage on the first {args.num_inputs} val inputs x {args.num_z} random codes (seed 0); "
        f"mean ± sd (min-max) over seeds {seeds}. CPU minutes = step x measured 1-thread CPU s/step "
        f"({', '.join(f'{k}: {v:.3f}' for k, v in cost.items())}).",
        f"Data: all shapes one colour in {data_same:.3f} of the multi-shape training targets.",
        "",
        trajectory_table(results, cost),
    ]
    if ablate:
        report += ["", f"Ablation (BicycleGAN recipe, seeds {ablation_seeds}, the last step all cells reached):", "",
                   ablation_table(ablation_rows)]
    broken = {Path(f).name: s for f, (s, _, _) in by_folder.items() if s == "diverged" or s.startswith("failed")}
    if broken:
        report += ["", "Not scored: " + "; ".join(f"{name} ({status})" for name, status in broken.items())]
    (out / "results.md").write_text("\n".join(report) + "\n")
    (out / "results.json").write_text(json.dumps({
        "protocol": {"num_inputs": args.num_inputs, "num_z": args.num_z, "steps": steps, "seeds": seeds},
        "cpu_s_per_step": cost, "data_same_colour_fraction": data_same,
        "runs": {Path(f).name: {"status": s, "train_cpu_s": c, "scores": sc} for f, (s, sc, c) in by_folder.items()},
    }, indent=1))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
