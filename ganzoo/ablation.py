"""Ablation grids: train every combination of some recipe values, evaluate each, compare in one table.

    runs = plan_ablation("recipes/bicyclegan_variants/bicyclegan.yaml",
                         ["model.networks.E.type=resnet_128,conv_128", "model.networks.G.inject=input,all"])
    result = run_ablation(runs, "runs/ablate_E_x_inject")    # trains, evaluates, writes the tables

Layout of the output folder::

    OUT/<run name>/      one ordinary run folder per combination (``ganzoo train`` layout) + eval.json
    OUT/results.md       the comparison table, one row per run (its grid values, status, metrics), and
                         with a ``train.seed`` grid one row per cell (mean and spread over its seeds)
    OUT/results.csv      the same table for spreadsheets and pandas
    OUT/comparison.png   one row per cell: the same val inputs and the same codes z in every row, labelled
    OUT/metrics.png      each metric per cell: every seed's value, their mean and spread

Every combination is resolved before anything trains, so a wrong key or value in any of them is
a recipe error naming the key path. Re-running the same command skips the finished runs (their
``summary.json`` says ``step == total_steps``) and resumes the unfinished ones from their last
checkpoint; evaluation results are kept in ``eval.json`` and reused while step and protocol match.
"""
from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ganzoo.errors import GanzooError, RecipeError
from ganzoo.recipe import dump_recipe, load_recipe, resolve_recipe
from ganzoo.plugins import activate_plugins
from ganzoo.recipe.load import apply_override, apply_overrides, parse_yaml, split_override
from ganzoo.recipe.schema import Recipe

# Keys that may differ between a run folder and the plan without making it another experiment:
# the length of training and the logging (the same keys ``ganzoo train --resume`` accepts).
_RESUMABLE = (("train", "max_steps"), ("train", "epochs"), ("train", "epochs_decay"), ("log",), ("data", "workers"))

Evaluator = Callable[..., Mapping[str, Any]]


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid KEY=V1,V2,...``: a dotted recipe key and the value texts (each parsed as YAML)."""

    key: str
    values: tuple[str, ...]

    def overrides(self) -> list[str]:
        return [f"{self.key}={value}" for value in self.values]


@dataclass
class AblationRun:
    """One combination of the grid: its folder name, its ``KEY=VALUE`` overrides and resolved recipe."""

    name: str
    settings: dict[str, str]
    recipe: Recipe = field(repr=False)

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings.items()]


@dataclass
class RunOutcome:
    """What happened to one run: ``status`` is finished, trained, resumed, diverged or planned."""

    run: AblationRun
    status: str
    step: int = 0
    total_steps: int = 0
    train_seconds: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class AblationResult:
    out_dir: Path
    outcomes: list[RunOutcome]

    @property
    def markdown(self) -> Path:
        return self.out_dir / "results.md"

    @property
    def csv(self) -> Path:
        return self.out_dir / "results.csv"

    @property
    def comparison(self) -> Path:
        return self.out_dir / "comparison.png"

    @property
    def plot(self) -> Path:
        return self.out_dir / "metrics.png"


# -- parsing -------------------------------------------------------------------------------------
def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes: ``[0.5,0.9],[0,0.99]`` is two values."""
    values, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_grid(spec: str) -> GridAxis:
    """Parse ``KEY=V1,V2[,...]``; each value must be valid YAML (checked here, not at training time)."""
    key, sep, rest = spec.partition("=")
    example = "for example --grid model.nz=2,8,256 or --grid model.networks.G.inject=input,all"
    if not sep or not key.strip() or not rest.strip():
        raise RecipeError("--grid", f"{spec!r} is not KEY=V1,V2,...", hint=example)
    values = _split_values(rest)
    if any(not v for v in values):
        raise RecipeError("--grid", f"{spec!r} has an empty value (two commas in a row or a trailing comma)",
                          hint=example)
    parts, _ = split_override(f"{key.strip()}=null")  # the key's syntax, and no load-only key
    for value in values:
        parse_yaml(value, f"--grid {key.strip()}")
    if len(set(values)) != len(values):
        raise RecipeError("--grid", f"{spec!r} lists a value twice")
    return GridAxis(".".join(parts), tuple(values))


def _short_key(key: str, keys: Sequence[str]) -> str:
    short = re.sub(r"^model\.(networks\.)?", "", key)
    others = [re.sub(r"^model\.(networks\.)?", "", k) for k in keys if k != key]
    return key if short in others else short


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "empty"


def run_name(settings: Mapping[str, str]) -> str:
    """A readable folder name for a combination: ``E.type=conv_128__G.inject=all``."""
    keys = list(settings)
    return "__".join(f"{_safe(_short_key(k, keys))}={_safe(v)}" for k, v in settings.items()) or "base"


def plan_ablation(recipe: str | os.PathLike[str], grid: Iterable[str | GridAxis],
                  overrides: Iterable[str] = ()) -> list[AblationRun]:
    """Every combination of the grid, resolved and validated (nothing is trained).

    Args:
        recipe: the recipe file the runs start from.
        grid: ``KEY=V1,V2,...`` texts (or parsed axes); the runs are their Cartesian product.
        overrides: ``KEY=VALUE`` applied to every run before the grid values.

    Raises:
        RecipeError: a malformed grid, a key given twice, or a combination the recipe rejects
            (the message names the key path and the combination).
    """
    axes = [axis if isinstance(axis, GridAxis) else parse_grid(axis) for axis in grid]
    if not axes:
        raise RecipeError("--grid", "no grid given: an ablation needs at least one --grid KEY=V1,V2,...")
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            raise RecipeError(axis.key, "appears in two --grid options; give all its values in one")
        seen.add(axis.key)
    set_keys = {text.partition("=")[0].strip() for text in overrides}
    clash = sorted(seen & set_keys)
    if clash:
        raise RecipeError(clash[0], "is both a --grid key and a --set key; the grid would override --set",
                          hint="drop one of them")
    base = load_recipe(recipe)
    activate_plugins(recipe=base, trust_recipe=True, recipe_source=os.fspath(recipe),
                     base_dir=Path(recipe).expanduser().parent)
    base = apply_overrides(base, list(overrides))
    activate_plugins(recipe=base, trust_recipe=True, recipe_source=f"{os.fspath(recipe)} (with --set)", base_dir=".")
    runs: list[AblationRun] = []
    names: dict[str, int] = {}
    for combination in itertools.product(*(axis.values for axis in axes)):
        settings = {axis.key: value for axis, value in zip(axes, combination)}
        name = run_name(settings)
        if name in names:  # values that differ only in characters a folder name cannot hold
            names[name] += 1
            name = f"{name}__{names[name]}"
        names.setdefault(name, 1)
        tree = copy.deepcopy(base)
        try:
            for text in (f"{k}={v}" for k, v in settings.items()):
                apply_override(tree, text)
            resolved = resolve_recipe(tree, source=os.fspath(recipe))
        except RecipeError as error:
            wrapped = RecipeError("", error.message.replace("(in --set ", "(in --grid "),
                                  hint=f"in the grid run {', '.join(f'{k}={v}' for k, v in settings.items())}"
                                  + (f"; {error.hint}" if error.hint else ""))
            wrapped.key = error.key
            raise wrapped from None
        runs.append(AblationRun(name, settings, resolved))
    return runs


# -- run folders ---------------------------------------------------------------------------------
def _comparable(recipe: Recipe | Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as plain YAML data without the keys a resumed run may change."""
    plain = yaml.safe_load(dump_recipe(recipe))
    for path in _RESUMABLE:
        node = plain
        for part in path[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return plain


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_state(run: AblationRun, folder: Path) -> str:
    """``new``, ``finished`` or ``unfinished`` (has checkpoints); a folder of another experiment is an error."""
    from ganzoo.training.checkpoint import CheckpointDir

    checkpoints = CheckpointDir(folder / "checkpoints")
    has_checkpoints = checkpoints.latest.exists() or bool(checkpoints.step_files())
    stored = folder / "recipe.yaml"
    if has_checkpoints and stored.is_file():
        try:
            old = yaml.safe_load(stored.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            old = None
        if not isinstance(old, dict) or _comparable(old) != _comparable(run.recipe):
            raise GanzooError(f"{folder} holds a run of a different recipe than this grid's {run.name}",
                              hint="use another --out, or delete that folder to retrain it")
    if not has_checkpoints:
        return "new"
    summary = _read_json(folder / "summary.json")
    planned = run.recipe.train.max_steps
    if summary and summary.get("step") == summary.get("total_steps") and \
            (planned is None or summary.get("total_steps") == planned):
        return "finished"
    return "unfinished"


def _eval_request(metrics: Sequence[str] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"metrics": list(metrics) if metrics is not None else None, **{k: options[k] for k in sorted(options)}}


def _evaluate_run(folder: Path, step: int, metrics: Sequence[str] | None, options: Mapping[str, Any],
                  evaluator: Evaluator | None) -> tuple[dict[str, float], list[str]]:
    """Scores of one run (from ``eval.json`` when it is for this step and request, else measured)."""
    from ganzoo.evaluation import flat_scores

    request = _eval_request(metrics, options)
    cached = _read_json(folder / "eval.json")
    if cached and cached.get("request") == request and cached.get("result", {}).get("step") == step:
        result = cached["result"]
    else:
        if evaluator is None:
            from ganzoo.evaluation import evaluate as evaluator
        result = dict(evaluator(folder, metrics=list(metrics) if metrics is not None else None, **options))
        (folder / "eval.json").write_text(json.dumps({"request": request, "result": result}, indent=2) + "\n",
                                          encoding="utf-8")
    notes = [f"{name} not measured: {' '.join(message.split())}"
             for name, message in (result.get("unavailable") or {}).items()]
    return flat_scores(result), notes


#: ``ganzoo ablate`` options of the evaluation, by their ``eval_options`` key.
EVAL_FLAGS = {"split": "--split", "num_inputs": "--num-inputs", "num_z": "--num-z"}


def evaluation_flags(metrics: Sequence[str] | None, options: Mapping[str, Any], evaluate: bool = True) -> list[str]:
    """The ``ganzoo ablate`` options that repeat an evaluation: ``--metrics``, ``--split``, ``--num-inputs``...

    ``--metrics`` is left out when every metric that applies was asked for (the command's default).
    """
    words = ["--metrics", "none"] if not evaluate else ["--metrics", ",".join(metrics)] if metrics else []
    if evaluate:
        for key, flag in EVAL_FLAGS.items():
            if key in options:
                words += [flag, str(options[key])]
    return words


def _with_evaluation_flags(title: str, metrics: Sequence[str] | None, options: Mapping[str, Any],
                           evaluate: bool) -> str:
    """``title`` with the evaluation options it does not name yet appended, so the command repeats the scores."""
    if not title.startswith("ganzoo ablate"):
        return title
    words = evaluation_flags(metrics, options, evaluate)
    pairs = [(words[i], words[i + 1]) for i in range(0, len(words), 2)]
    missing = [w for flag, value in pairs if not re.search(rf"(^|\s){re.escape(flag)}(\s|=|$)", title)
               for w in (flag, shlex.quote(value))]
    return " ".join([title, *missing])


def run_ablation(runs: Sequence[AblationRun], out_dir: str | os.PathLike[str], *,
                 metrics: Sequence[str] | None = None, eval_options: Mapping[str, Any] | None = None,
                 evaluate: bool = True, dry_run: bool = False, show_progress: bool = True,
                 console: Console | None = None, evaluator: Evaluator | None = None,
                 title: str = "") -> AblationResult:
    """Train (or resume, or skip) every run in turn, evaluate it, and rewrite the tables after each.

    Args:
        runs: from :func:`plan_ablation`.
        out_dir: the ablation folder; run ``r`` trains in ``out_dir / r.name``.
        metrics: metric names for :func:`ganzoo.evaluation.evaluate` (None: every metric that applies).
        eval_options: more arguments of the evaluation (``split``, ``num_inputs``, ``num_z``, ``seed``...).
        evaluate: False trains only (the table then has no metric columns).
        dry_run: report what each run would do, train nothing, write nothing.
        evaluator: replaces :func:`ganzoo.evaluation.evaluate` (same signature), e.g. in tests.
        title: a line for the top of ``results.md`` (the command that made it). A ``ganzoo ablate``
            command gets the evaluation options it does not name (``--metrics``, ``--split``,
            ``--num-inputs``, ``--num-z``) appended, so that it repeats the scores as well.

    A run whose loss becomes non-finite is recorded as ``diverged`` and the grid goes on; Ctrl-C
    stops after writing a checkpoint, and re-running the same command continues from there.
    """
    from ganzoo.training.trainer import NonFiniteLoss, Trainer

    console = console or Console(stderr=True)
    out = Path(out_dir)
    options = dict(eval_options or {})
    title = _with_evaluation_flags(title, metrics, options, evaluate)
    outcomes: list[RunOutcome] = []
    result = AblationResult(out, outcomes)
    for index, run in enumerate(runs, 1):
        folder = out / run.name
        state = run_state(run, folder)
        head = f"[{index}/{len(runs)}] {run.name}"
        if dry_run:
            what = {"new": "would train", "finished": "finished, would be skipped",
                    "unfinished": "unfinished, would resume"}[state]
            console.print(f"{head}: {what} ({', '.join(run.overrides)})", highlight=False, soft_wrap=True)
            outcomes.append(RunOutcome(run, "planned" if state != "finished" else "finished"))
            continue
        outcome = RunOutcome(run, "finished")
        if state == "finished":
            console.print(f"{head}: finished, skipped", highlight=False, soft_wrap=True)
            summary = _read_json(folder / "summary.json") or {}
        else:
            console.print(f"{head}: {'resuming' if state == 'unfinished' else 'training'} "
                          f"({', '.join(run.overrides)}) -> {folder}", highlight=False, soft_wrap=True)
            try:
                trainer = Trainer(run.recipe, folder, resume=state == "unfinished", show_progress=show_progress,
                                  console=console)
                trainer.run()
                outcome.status = "resumed" if state == "unfinished" else "trained"
            except NonFiniteLoss as error:
                console.print(f"[yellow]{head} diverged:[/] {error.message}", highlight=False, soft_wrap=True)
                outcome.status = "diverged"
                outcome.notes.append(error.message)
            summary = _read_json(folder / "summary.json") or {}
        outcome.step = int(summary.get("step", 0))
        outcome.total_steps = int(summary.get("total_steps", 0))
        outcome.train_seconds = summary.get("seconds")
        if evaluate and outcome.status != "diverged":
            outcome.scores, notes = _evaluate_run(folder, outcome.step, metrics, options, evaluator)
            outcome.notes += notes
        outcomes.append(outcome)
        write_tables(result, title=title)
    if not dry_run:
        write_pictures(result, console=console)
        write_tables(result, title=title)  # now with the pictures
    return result


# -- tables --------------------------------------------------------------------------------------
def _columns(outcomes: Sequence[RunOutcome]) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    scores: list[str] = []
    for outcome in outcomes:
        keys += [k for k in outcome.run.settings if k not in keys]
        scores += [k for k in outcome.scores if k not in scores]
    return keys, scores


def table_rows(outcomes: Sequence[RunOutcome]) -> tuple[list[str], list[list[Any]]]:
    """The header and the rows of the comparison table (values unformatted)."""
    keys, scores = _columns(outcomes)
    header = ["run", *keys, "status", "step", "train_seconds", *scores]
    rows = []
    for o in outcomes:
        rows.append([o.run.name, *(o.run.settings.get(k, "") for k in keys), o.status, o.step,
                     o.train_seconds if o.train_seconds is not None else "", *(o.scores.get(k, "") for k in scores)])
    return header, rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def write_tables(result: AblationResult, title: str = "") -> None:
    """Write ``results.md`` and ``results.csv`` for the outcomes so far."""
    header, rows = table_rows(result.outcomes)
    result.out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    result.csv.write_text(buffer.getvalue(), encoding="utf-8")
    lines = ["# Ablation results", ""]
    if title:
        lines += [f"`{title}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    cells = cell_groups(result.outcomes)
    if any(len(group) > 1 for group in cells.values()):
        lines += ["", f"Per cell, over the seeds ({SEED_KEY}): mean ± standard deviation (min-max).", ""]
        lines += _cell_table(cells)
    for name, what in ((result.comparison.name, "comparison"), (result.plot.name, "metrics")):
        if (result.out_dir / name).is_file():
            lines += ["", f"![{what}]({name})"]
    notes = sorted({note for o in result.outcomes for note in o.notes})
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    result.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- cells, pictures -------------------------------------------------------------------------------
#: The grid key whose values are repetitions of one cell rather than cells of their own.
SEED_KEY = "train.seed"


def cell_name(settings: Mapping[str, str]) -> str:
    """A cell's label: its grid values without the seed (``inject=all, nz=8``), or ``base``."""
    keys = [k for k in settings if k != SEED_KEY]
    return ", ".join(f"{_short_key(k, keys)}={settings[k]}" for k in keys) or "base"


def cell_groups(outcomes: Sequence[RunOutcome]) -> dict[str, list[RunOutcome]]:
    """The outcomes by cell (their settings without ``train.seed``), in grid order."""
    cells: dict[str, list[RunOutcome]] = {}
    for outcome in outcomes:
        cells.setdefault(cell_name(outcome.run.settings), []).append(outcome)
    return cells


def _spread(values: Sequence[float]) -> tuple[float, float, float, float]:
    """(mean, standard deviation over the seeds, min, max)."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std, min(values), max(values)


def _cell_table(cells: Mapping[str, Sequence[RunOutcome]]) -> list[str]:
    scores: list[str] = []
    for group in cells.values():
        for o in group:
            scores += [k for k in o.scores if k not in scores]
    lines = ["| cell | seeds | " + " | ".join(scores) + " |", "|---|---|" + "---|" * len(scores)]
    for name, group in cells.items():
        row = [name.replace("|", "\\|"), str(len(group))]
        for score in scores:
            values = [float(o.scores[score]) for o in group if isinstance(o.scores.get(score), (int, float))]
            if not values:
                row.append("")
                continue
            mean, std, low, high = _spread(values)
            row.append(f"{mean:.4g} ± {std:.2g} ({low:.4g}-{high:.4g})" if len(values) > 1 else f"{mean:.4g}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_pictures(result: AblationResult, *, num_inputs: int = 3, num_z: int = 4, seed: int = 0,
                   console: Console | None = None) -> list[Path]:
    """``comparison.png`` and ``metrics.png`` for the finished runs; a picture that cannot be made (no
    checkpoint, no val split, no scores) is left out with a note on ``console``. Returns those written."""
    written = []
    for make, path in ((comparison_sheet, result.comparison), (metrics_plot, result.plot)):
        try:
            if make(result, path, **({"num_inputs": num_inputs, "num_z": num_z, "seed": seed}
                                     if make is comparison_sheet else {})):
                written.append(path)
        except GanzooError as exc:
            if console is not None:
                console.print(f"[yellow]note:[/] {path.name} not written: {exc.message}", highlight=False,
                              soft_wrap=True)
    return written


def comparison_sheet(result: AblationResult, path: Path, *, num_inputs: int = 3, num_z: int = 4, seed: int = 0
                     ) -> Path | None:
    """One row per cell (its first seed's run): G's outputs for the first ``num_inputs`` val inputs and
    the same ``num_z`` codes z in every row, under rows showing the inputs and their targets."""
    import torch

    from ganzoo.errors import DataError
    from ganzoo.evaluation import evaluation_dataset
    from ganzoo.inference import generate, load, model_nz, random_latents
    from ganzoo.training.run_log import labelled_sheet

    rows: list[torch.Tensor] = []  # per row: (num_inputs * codes, 3, H, W)
    labels: list[str] = []
    header: list[str] = []
    size: tuple[int, int] | None = None

    def rgb(images: torch.Tensor) -> torch.Tensor:
        images = images.float().cpu()
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
        if size is not None and tuple(images.shape[-2:]) != size:
            images = torch.nn.functional.interpolate(images, size=size, mode="nearest")
        return images

    for name, group in cell_groups(result.outcomes).items():
        outcome = next((o for o in group if o.status != "diverged" and o.step > 0), None)
        if outcome is None:
            continue
        folder = result.out_dir / outcome.run.name
        model = load(folder, device="cpu")
        try:
            dataset = evaluation_dataset(model.recipe, "val")
        except (DataError, RecipeError) as exc:
            raise GanzooError(f"no val split for the comparison ({exc.message})") from None
        n = min(num_inputs, len(dataset))
        A = torch.stack([dataset[i]["A"] for i in range(n)])
        nz = model_nz(model)
        codes = random_latents(num_z, nz, seed=seed) if nz else None
        outputs = generate(model, A, codes).cpu()  # (n, K, C, H, W)
        k = outputs.shape[1]
        if not rows:
            size = tuple(outputs.shape[-2:])
            B = torch.stack([dataset[i]["B"] for i in range(n)])
            rows.append(rgb(A).repeat_interleave(k, 0))
            rows.append(rgb(B).repeat_interleave(k, 0))
            labels += ["input", "target"]
            header = [f"x{i + 1} z{j + 1}" if k > 1 else f"x{i + 1}" for i in range(n) for j in range(k)]
        flat = rgb(outputs.flatten(0, 1))
        if flat.shape[0] != rows[0].shape[0]:  # another number of inputs or codes than the first row
            flat = torch.cat([flat, torch.ones(max(0, rows[0].shape[0] - flat.shape[0]), *flat.shape[1:])])
            flat = flat[: rows[0].shape[0]]
        rows.append(flat)
        seeds = f" (seed {outcome.run.settings[SEED_KEY]})" if SEED_KEY in outcome.run.settings else ""
        labels.append(name + seeds)
    if len(rows) <= 2:
        return None
    columns = [torch.stack([row[c] for row in rows]) for c in range(rows[0].shape[0])]
    title = "ganzoo ablate: G's outputs per cell; the same val inputs x and codes z in every row"
    labelled_sheet(columns, header, row_labels=labels, title=title).save(path)
    return path


def metrics_plot(result: AblationResult, path: Path, *, max_panels: int = 12) -> Path | None:
    """Each metric score per cell, drawn with PIL: every seed's value (dots), the mean (a bar) and
    the spread (a line from the lowest to the highest), one panel per score."""
    from PIL import Image, ImageDraw

    from ganzoo.training.run_log import _label_font

    cells = {name: [o for o in group if o.scores] for name, group in cell_groups(result.outcomes).items()}
    cells = {name: group for name, group in cells.items() if group}
    scores: list[str] = []
    for group in cells.values():
        for o in group:
            scores += [k for k in o.scores if k not in scores and isinstance(o.scores[k], (int, float))]
    scores = scores[:max_panels]
    if not scores:
        return None
    font = _label_font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = min(300, int(max(probe.textlength(n, font=font) for n in cells)) + 16)
    axis_w, right, row_h, head = 360, 150, 20, 26
    panel_h = head + row_h * len(cells) + 24
    image = Image.new("RGB", (left + axis_w + right, panel_h * len(scores) + 8), "white")
    draw = ImageDraw.Draw(image)
    for p, score in enumerate(scores):
        y0 = p * panel_h + 4
        values = {name: [float(o.scores[score]) for o in group if isinstance(o.scores.get(score), (int, float))]
                  for name, group in cells.items()}
        every = [v for vs in values.values() for v in vs if math.isfinite(v)]
        if not every:
            continue
        low, high = min(every), max(every)
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        margin = 0.05 * (high - low)
        low, high = low - margin, high + margin

        def x(value: float) -> float:
            return left + (value - low) / (high - low) * axis_w

        draw.text((8, y0 + 4), score, fill="black", font=font)
        for r, (name, vs) in enumerate(values.items()):
            y = y0 + head + r * row_h + row_h / 2
            draw.text((8, y - 7), name if probe.textlength(name, font=font) < left - 12 else name[:40] + "…",
                      fill="black", font=font)
            draw.line((left, y, left + axis_w, y), fill=(225, 225, 225))
            finite = [v for v in vs if math.isfinite(v)]
            if not finite:
                continue
            mean, std, lo, hi = _spread(finite)
            draw.line((x(lo), y, x(hi), y), fill=(90, 120, 200), width=3)
            for v in finite:
                draw.ellipse((x(v) - 3, y - 3, x(v) + 3, y + 3), fill=(40, 70, 170))
            draw.line((x(mean), y - 7, x(mean), y + 7), fill=(200, 40, 40), width=2)
            text = f"{mean:.3g} ± {std:.2g} (n={len(finite)})" if len(finite) > 1 else f"{mean:.3g}"
            draw.text((left + axis_w + 8, y - 7), text, fill="black", font=font)
        y_axis = y0 + head + len(values) * row_h + 2
        draw.line((left, y_axis, left + axis_w, y_axis), fill="black")
        for value in (low + margin, (low + high) / 2, high - margin):
            draw.line((x(value), y_axis, x(value), y_axis + 4), fill="black")
            label = f"{value:.3g}"
            draw.text((x(value) - probe.textlength(label, font=font) / 2, y_axis + 5), label, fill="black", font=font)
    image.save(path)
    return path


__all__ = [
    "AblationResult",
    "AblationRun",
    "GridAxis",
    "RunOutcome",
    "cell_groups",
    "cell_name",
    "comparison_sheet",
    "evaluation_flags",
    "metrics_plot",
    "parse_grid",
    "plan_ablation",
    "run_ablation",
    "run_name",
    "run_state",
    "table_rows",
    "write_pictures",
    "write_tables",
]
