"""Watching a run: early stopping (``train.early_stop``) and the best checkpoint (``log.keep_best``).

A watched value is either a **loss** the model logs (``G_total``, ``l1``, ``D``...), read as its mean
over the steps since the previous check, at every ``log.every`` step; or an **evaluation score**
(``train.eval_every``), named ``<metric>`` (its score of the same name, or its only score) or
``<metric>.<score>`` (``mode_coverage.on_palette``), read at every evaluation. Names are checked when
the recipe is resolved where they can be known (metric names from the metric registry; loss names
from the model's :meth:`~ganzoo.models.base.ModelSpec.loss_names`), else at the first check, which
then stops the run with a :class:`~ganzoo.errors.RecipeError` naming the key.

Both keep their state in every checkpoint, so a resumed run counts on from where it was.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ganzoo.errors import RecipeError, did_you_mean


def registered_metrics() -> list[str]:
    import ganzoo.metrics  # noqa: F401  (registers the built-in metrics)
    from ganzoo.registry import list_components

    return list_components("metric")["metric"]


@dataclass(frozen=True)
class Watched:
    """What a ``watch`` / ``metric`` name refers to: a loss, or a metric's score."""

    name: str
    metric: str | None = None  # None: a loss
    score: str | None = None  # None: the metric's score of its own name, or its only one

    @property
    def is_metric(self) -> bool:
        return self.metric is not None


def classify(name: str) -> Watched:
    """A name as a metric score when its first part is a registered metric, else as a loss."""
    metric, _, score = name.partition(".")
    if metric in registered_metrics():
        return Watched(name, metric, score or None)
    return Watched(name)


def score_of(result: Mapping[str, Any], watched: Watched, key: str) -> float:
    """The watched score in an :func:`ganzoo.evaluation.evaluate` result; a RecipeError naming ``key`` when
    the evaluation did not give it (the metric was skipped, unavailable, or has no such score)."""
    metric = watched.metric
    assert metric is not None
    scores = result.get("metrics", {}).get(metric)
    if scores is None:
        why = (result.get("unavailable", {}).get(metric) or result.get("skipped", {}).get(metric)
               or "it was not evaluated (train.eval_metrics)")
        raise RecipeError(key, f"metric {metric!r} gave no score in the evaluation at step {result.get('step')}: {why}",
                          hint="watch a metric that applies to this data and model, or a loss")
    numbers = {k: v for k, v in scores.items() if k != "info" and isinstance(v, (int, float))}
    wanted = watched.score or (metric if metric in numbers else (next(iter(numbers)) if len(numbers) == 1 else None))
    if wanted is None or wanted not in numbers:
        shown = ", ".join(f"{metric}.{k}" for k in numbers)
        raise RecipeError(key, f"{watched.name!r} names no score of metric {metric!r}; it gives {shown}",
                          hint=did_you_mean(watched.score or metric, list(numbers)) or f"use one of {shown}")
    return float(numbers[wanted])


def _better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class LossMean:
    """The mean of one logged loss over the steps since the last read, kept on the device (no sync per step)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, losses: Mapping[str, torch.Tensor]) -> None:
        value = losses.get(self.name)
        if value is None:
            return
        value = value.detach().float().reshape(())
        self.total = value.clone() if self.total is None else self.total + value
        self.count += 1

    def read(self, key: str, available: Sequence[str]) -> float:
        if self.count == 0 or self.total is None:
            raise RecipeError(key, f"{self.name!r} is not a loss this run logs; it logs {', '.join(available)}",
                              hint=did_you_mean(self.name, list(available))
                              or "watch one of those, or a metric score (with train.eval_every)")
        value = float(self.total) / self.count
        self.total, self.count = None, 0
        return value


class EarlyStopping:
    """``train.early_stop``: stop when the watched value has not improved for ``patience`` checks."""

    key = "train.early_stop.watch"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.watched = classify(str(spec["watch"]))
        self.mode = spec.get("mode") or "min"
        self.patience = int(spec["patience"])
        self.min_delta = float(spec.get("min_delta") or 0.0)
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_checks = 0
        self.checks = 0
        self.reason: str | None = None  # set once the run should stop
        self.loss_mean = LossMean(self.watched.name) if not self.watched.is_metric else None

    @property
    def unit(self) -> str:
        return "evaluation" if self.watched.is_metric else "log step"

    def update(self, value: float, step: int) -> bool:
        """Record the value of one check at ``step``; True when the run should stop now."""
        self.checks += 1
        if _better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_step, self.bad_checks = value, step, 0
            return False
        self.bad_checks += 1
        if self.bad_checks >= self.patience:
            best = "none finite" if self.best is None else f"best {self.best:.4g} at step {self.best_step}"
            unit = self.unit + ("s in a row" if self.bad_checks > 1 else "")
            self.reason = (f"{self.watched.name} has not improved ({self.mode}) for {self.bad_checks} {unit} "
                           f"(patience {self.patience}; {best}; now {value:.4g})")
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_checks": self.bad_checks, "checks": self.checks,
                "reason": self.reason}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_step = state.get("best"), state.get("best_step")
        self.bad_checks, self.checks = int(state.get("bad_checks", 0)), int(state.get("checks", 0))
        self.reason = state.get("reason")


class BestKeeper:
    """``log.keep_best``: which evaluation so far scored best (``checkpoints/best.pt`` holds its weights)."""

    key = "log.keep_best.metric"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.watched = classify(str(spec["metric"]))
        self.mode = str(spec["mode"])
        self.best: float | None = None
        self.best_step: int | None = None

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation; True when it is the best so far (then best.pt is to be written)."""
        if _better(value, self.best, self.mode):
            self.best, self.best_step = value, step
            return True
        return False

    def info(self) -> dict[str, Any]:
        return {"metric": self.watched.name, "mode": self.mode, "value": self.best, "step": self.best_step}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_step = state.get("best"), state.get("best_step")


__all__ = ["BestKeeper", "EarlyStopping", "LossMean", "Watched", "classify", "registered_metrics", "score_of"]
