"""Run metrics over a data split and collect the scores in one JSON-ready dict.

    result = evaluate("runs/quickstart", split="val", metrics=["mode_coverage", "diversity"])
    result["metrics"]["mode_coverage"]["mode_coverage"]     # 5.3
    flat_scores(result)                                      # {"mode_coverage.mode_coverage": 5.3, ...}

With ``metrics=None`` every registered metric that applies to the model and data runs; one whose
weights or package are missing is reported under ``unavailable`` instead of stopping the others.
A metric named explicitly must run: if it cannot, that is an error, unless ``strict=False`` (what
training uses: an evaluation never stops a run), which records it as ``unavailable`` or ``skipped``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import DataError, GanzooError, RecipeError, did_you_mean
from ganzoo.metrics.base import EvalContext, MetricUnavailable
from ganzoo.recipe.schema import Recipe
from ganzoo.registry import build, list_components


def metric_names() -> list[str]:
    """Every registered metric."""
    import ganzoo.metrics  # noqa: F401  (registers the built-in metrics)

    return list_components("metric")["metric"]


def evaluation_dataset(recipe: Recipe, split: str = "val", data_root: str | os.PathLike[str] | None = None,
                       direction: str | None = None) -> Any:
    """The recipe's dataset for ``split`` (no flips), at ``data_root`` when given, in ``direction`` when given."""
    from ganzoo.data.from_recipe import make_dataset

    data = recipe.data
    if data_root is not None:  # a different folder is used as it is: never generate a shapes world over it
        data = dataclasses.replace(data, root=os.fspath(data_root), shapes=None)
    if direction is not None:
        data = dataclasses.replace(data, direction=direction)
    # a fixed A-B pairing for unpaired data, as the official test phase has
    extra = {"serial_batches": True} if "unaligned" in data.dataset else {}
    return make_dataset(recipe.replace(data=data), split, **extra)


def weight_options(inception: str | os.PathLike[str] | None = None,
                   lpips: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """``metric_options`` that point the metrics at local weight files (InceptionV3 for fid/kid, the
    LPIPS backbone for diversity), as ``ganzoo eval --inception-weights/--lpips-weights`` and the
    recipe's ``train.eval_weights`` give them; None leaves a metric to its environment variable and
    the torch hub cache."""
    options: dict[str, dict[str, Any]] = {}
    if inception is not None:
        options["fid"] = {"inception_weights": os.fspath(inception)}
        options["kid"] = {"inception_weights": os.fspath(inception)}
    if lpips is not None:
        options["diversity"] = {"backbone_weights": os.fspath(lpips)}
    return options


def _choose(names: Iterable[str] | None) -> tuple[list[str], bool]:
    known = metric_names()
    if names is None:
        return known, False
    chosen = [n.strip() for n in names if n.strip()]
    for name in chosen:
        if name not in known:
            raise GanzooError(f"unknown metric {name!r}; registered: {', '.join(known)}",
                              hint=did_you_mean(name, known))
    return chosen, True


def evaluate(model: nn.Module | str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None = None,
             split: str = "val", metrics: Iterable[str] | None = None, num_inputs: int = 100, num_z: int = 20,
             seed: int = 0, direction: str = "AtoB", metric_options: Mapping[str, Mapping[str, Any]] | None = None,
             device: torch.device | str | None = None, dataset: Any = None,
             strict: bool | None = None) -> dict[str, Any]:
    """Score a model on one split.

    Args:
        model: a loaded model (:func:`ganzoo.load`) or a run folder / checkpoint path.
        data_root: dataset folder (default: the recipe's ``data.root``).
        split: the split folder (``val``, ``test``...).
        metrics: metric names (default: every registered metric that applies).
        num_inputs, num_z, seed: the protocol: first N inputs, K seeded random codes per input
            (the BicycleGAN paper: 100 inputs, 20 codes).
        direction: for CycleGAN, ``AtoB`` evaluates G_A on domain A, ``BtoA`` G_B on domain B.
        metric_options: per-metric constructor arguments (``{"fid": {"feature": net}}``).
        dataset: a ready dataset instead of the recipe's (its items as the datasets give them).
        strict: whether a metric that cannot run (:class:`MetricUnavailable`) or does not apply is an
            error; default: when ``metrics`` names them. False records them under ``unavailable`` /
            ``skipped`` and scores the others.

    Returns:
        ``{"checkpoint", "step", "weight_average", "model", "protocol", "metrics": {name: {score: value, "info": {...}}},
        "skipped": {name: reason}, "unavailable": {name: message}, "seconds"}``.
    """
    from ganzoo.inference import load

    started = time.perf_counter()
    if not isinstance(model, nn.Module):
        model = load(model, device=device)
    recipe = getattr(model, "recipe", None)
    if dataset is None:
        if recipe is None:
            raise GanzooError("the model carries no recipe: pass dataset=... to evaluate it")
        if "G_A" not in model.networks and direction != recipe.data.direction:
            raise GanzooError(f"direction {direction} differs from the recipe's data.direction; only CycleGAN "
                              "models translate both ways")
        try:
            dataset = evaluation_dataset(recipe, split, data_root,
                                         direction=direction if "G_A" in model.networks else None)
        except (DataError, RecipeError) as exc:
            raise DataError(f"cannot evaluate on split {split!r}: {exc.message}", hint=exc.hint) from None
    chosen, explicit = _choose(metrics)
    if strict is not None:
        explicit = strict
    options = dict(metric_options or {})
    was_training = model.training
    model.eval()
    ctx = EvalContext(model, dataset, num_inputs=num_inputs, num_z=num_z, seed=seed, direction=direction,
                      split=split)
    scores: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    try:
        for name in chosen:
            metric = build("metric", name, **dict(options.get(name, {})))
            reason = metric.skip_reason(ctx)
            if reason is not None:
                if explicit:
                    raise GanzooError(f"metric {name!r} does not apply here: {reason}")
                skipped[name] = reason
                continue
            try:
                scores[name] = metric(ctx).as_dict()
            except MetricUnavailable as exc:
                if explicit:
                    raise
                unavailable[name] = str(exc)
    finally:
        model.train(was_training)
    return {
        "checkpoint": str(getattr(model, "checkpoint_path", "") or ""),
        "step": int(getattr(model, "step", 0) or 0),
        "weight_average": bool(getattr(model, "uses_weight_average", False)),  # train.ema weights in use
        "model": ctx.model_type,
        "protocol": {**ctx.protocol(), "data_root": str(getattr(dataset, "root", data_root or ""))},
        "metrics": scores,
        "skipped": skipped,
        "unavailable": unavailable,
        "seconds": round(time.perf_counter() - started, 3),
    }


def flat_scores(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an :func:`evaluate` result as ``{"metric.score": value}`` (for tables and TensorBoard)."""
    flat = {}
    for name, values in result.get("metrics", {}).items():
        for key, value in values.items():
            if key != "info" and isinstance(value, (int, float)):
                flat[f"{name}.{key}"] = float(value)
    return flat


def log_to_tensorboard(result: Mapping[str, Any], writer_or_dir: Any, step: int | None = None) -> None:
    """Write the scores as ``eval/<metric>.<score>`` scalars (a SummaryWriter or a log folder)."""
    writer = writer_or_dir
    own = False
    if isinstance(writer_or_dir, (str, Path)):
        from torch.utils.tensorboard import SummaryWriter

        writer, own = SummaryWriter(log_dir=str(writer_or_dir)), True
    step = int(result.get("step", 0)) if step is None else step
    for key, value in flat_scores(result).items():
        writer.add_scalar(f"eval/{key}", value, step)
    writer.flush()
    if own:
        writer.close()


__all__ = ["evaluate", "evaluation_dataset", "flat_scores", "log_to_tensorboard", "metric_names", "weight_options"]
