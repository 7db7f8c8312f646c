"""Ablation grids: train every combination of some recipe values, evaluate each, compare in one table.

    runs = plan_ablation("recipes/bicyclegan_variants/bicyclegan.yaml",
                         ["model.networks.E.type=resnet_128,conv_128", "model.networks.G.inject=input,all"])
    result = run_ablation(runs, "runs/ablate_E_x_inject")    # trains, evaluates, writes the tables

Layout of the output folder::

    OUT/<run name>/      one ordinary run folder per combination (``ganzoo train`` layout) + eval.json
    OUT/results.md       the comparison table, one row per run (its grid values, status, metrics)
    OUT/results.csv      the same table for spreadsheets and pandas

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
    notes = sorted({note for o in result.outcomes for note in o.notes})
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    result.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = [
    "AblationResult",
    "AblationRun",
    "GridAxis",
    "RunOutcome",
    "evaluation_flags",
    "parse_grid",
    "plan_ablation",
    "run_ablation",
    "run_name",
    "run_state",
    "table_rows",
    "write_tables",
]
