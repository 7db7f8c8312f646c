"""Shapes-world metrics, scored against the ground truth in ``meta.jsonl``.

Every shape's colour in an output is the mean colour of its interior (its outline eroded away,
:func:`ganzoo.data.shapes.interior_colours`). That colour *counts as* palette colour ``c`` only when
it lies within :data:`PALETTE_TOLERANCE` (Euclidean, RGB in [0, 1]) of ``c``; the palette colours
are far apart, so at most one can match. Under this rule uniformly random colours rarely match
(about 0.7 colours per shape over 16 samples), while the data itself, drawing each shape's colour
uniformly from 8, reaches 8 with enough samples.

- ``mode_coverage`` (shapes-multimodal): per shape, how many distinct palette colours it takes
  across the K samples of its input, averaged over shapes; plus the fraction of (shape, sample)
  pairs on the palette and the fraction of multi-shape samples whose shapes all share one colour
  (colour independence: 1/8 for two shapes, 1/64 for three in the data).
- ``colour_accuracy`` (shapes-deterministic): fraction of shapes whose colour matches the one
  their type dictates.
- ``palette_transfer`` (shapes-unpaired): fraction of shapes whose translated colour matches the
  other domain's palette, and the IoU of the output's non-white area with the input's shapes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ganzoo.metrics.base import EvalContext, Metric, MetricResult
from ganzoo.registry import register

#: A colour counts as a palette colour when closer than this (RGB in [0, 1]).
PALETTE_TOLERANCE = 0.12
#: An output pixel is foreground when some channel is this far below white (RGB in [0, 1]).
FOREGROUND_THRESHOLD = 0.25


def match_palette(colours: np.ndarray, palette: Sequence[Sequence[int]], tolerance: float = PALETTE_TOLERANCE
                  ) -> np.ndarray:
    """Palette index each colour (..., 3; 0-255) lies within ``tolerance`` of, or -1 when none."""
    colours = np.asarray(colours, dtype=np.float64) / 255.0
    entries = np.asarray(palette, dtype=np.float64) / 255.0
    distances = np.linalg.norm(colours[..., None, :] - entries, axis=-1)
    nearest = distances.argmin(-1)
    return np.where(distances.min(-1) < tolerance, nearest, -1)


def shape_colours(samples: torch.Tensor, record: dict[str, Any]) -> np.ndarray:
    """Mean interior colour (0-255) of every shape in every sample: (K, S, 3) for uint8 samples (K, C, H, W)."""
    from ganzoo.data.shapes import interior_colours

    per_sample = []
    for image in samples:
        hwc = image.permute(1, 2, 0).numpy()
        if hwc.shape[2] == 1:
            hwc = np.repeat(hwc, 3, axis=2)
        per_sample.append(interior_colours(hwc, record))
    return np.asarray(per_sample, dtype=np.float64).reshape(len(per_sample), len(record["shapes"]), 3)


def coverage_statistics(samples: torch.Tensor, records: list[dict[str, Any]],
                        palette: Sequence[Sequence[int]] | None = None,
                        tolerance: float = PALETTE_TOLERANCE) -> dict[str, float]:
    """Mode coverage, on-palette fraction and colour independence of uint8 samples (N, K, C, H, W).

    Works on any images with shapes-world records: pass the ground-truth B images as (N, 1, C, H, W)
    to score the data itself.
    """
    from ganzoo.data.shapes import PALETTE

    palette = PALETTE if palette is None else palette
    covered: list[int] = []
    per_input: list[int] = []
    on_palette = total = 0
    shared = multi = 0
    for images, record in zip(samples, records):
        if not record["shapes"]:
            continue
        matches = match_palette(shape_colours(images, record), palette, tolerance)  # (K, S)
        covered += [len(set(matches[:, s][matches[:, s] >= 0].tolist())) for s in range(matches.shape[1])]
        per_input.append(len(set(matches[matches >= 0].tolist())))
        on_palette += int((matches >= 0).sum())
        total += matches.size
        if matches.shape[1] > 1:
            multi += matches.shape[0]
            shared += int(((matches >= 0).all(1) & (matches == matches[:, :1]).all(1)).sum())
    return {
        "mode_coverage": float(np.mean(covered)) if covered else 0.0,
        "colours_per_input": float(np.mean(per_input)) if per_input else 0.0,
        "on_palette": on_palette / total if total else 0.0,
        "same_colour_fraction": shared / multi if multi else 0.0,
    }


def _needs(ctx: EvalContext, flavours: tuple[str, ...]) -> str | None:
    flavour = ctx.shapes_flavour()
    if flavour is None:
        return "the data is not the shapes world (no meta.jsonl beside the images)"
    if flavour not in flavours:
        return f"it scores {' or '.join(flavours)} data, this is {flavour}"
    if flavour != "shapes-unpaired" and ctx.direction != "AtoB":
        return "it scores outline -> colour translation (direction AtoB)"
    return None


@register("metric", "mode_coverage")
class ModeCoverage(Metric):
    """Palette colours each shape takes across the samples (shapes-multimodal; the data reaches 8).

    Scores: ``mode_coverage``, ``colours_per_input``, ``on_palette`` (fraction of shape colours within
    the tolerance), ``same_colour_fraction`` (multi-shape samples with all shapes one palette colour),
    the same two figures with every shape given its nearest palette colour, no tolerance:
    ``nearest_colour_coverage`` (diversity alone) and ``same_nearest_colour_fraction``, and
    ``shape_iou``: how well the painted pixels cover the shapes and nothing else (the data: 1; shapes
    painted where the outline has none lower it, which no colour score sees).

    Args:
        tolerance: a shape's mean colour counts as a palette colour within this RGB distance (in [0, 1]).
        foreground_threshold: a pixel is painted when some channel is this far below white (in [0, 1]).
    """

    def __init__(self, tolerance: float = PALETTE_TOLERANCE, foreground_threshold: float = FOREGROUND_THRESHOLD
                 ) -> None:
        self.tolerance = float(tolerance)
        self.foreground_threshold = float(foreground_threshold)

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return _needs(ctx, ("shapes-multimodal",))

    def compute(self, ctx: EvalContext) -> MetricResult:
        samples, records = ctx.samples(), ctx.records() or []
        stats = coverage_statistics(samples, records, tolerance=self.tolerance)
        # The same samples with every shape given its nearest palette colour (no tolerance): how many
        # colours z reaches at all, and whether it acts as one global colour knob, however imprecise the
        # colours still are. The gap to mode_coverage is what colour precision costs.
        nearest = coverage_statistics(samples, records, tolerance=float("inf"))
        stats["nearest_colour_coverage"] = nearest["mode_coverage"]
        stats["same_nearest_colour_fraction"] = nearest["same_colour_fraction"]
        stats["shape_iou"] = float(np.mean([iou for images, record in zip(samples, records)
                                            for iou in shape_ious(images, record, self.foreground_threshold)]))
        info = {"rule": f"shape mean colour within {self.tolerance} (RGB in [0,1]) of a palette colour",
                "nearest_rule": "each shape given its nearest palette colour, no tolerance",
                "foreground": f"a channel below {1 - self.foreground_threshold:.2f}",
                "palette_size": 8, "inputs": ctx.num_inputs, "samples_per_input": ctx.num_z}
        return MetricResult(stats, info)


@register("metric", "colour_accuracy")
class ColourAccuracy(Metric):
    """Fraction of shapes coloured as their type dictates (shapes-deterministic)."""

    def __init__(self, tolerance: float = PALETTE_TOLERANCE) -> None:
        self.tolerance = float(tolerance)

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return _needs(ctx, ("shapes-deterministic",))

    def compute(self, ctx: EvalContext) -> MetricResult:
        from ganzoo.data.shapes import COLOUR_BY_TYPE, PALETTE

        correct = total = 0
        for images, record in zip(ctx.samples(), ctx.records() or []):
            if not record["shapes"]:
                continue
            matches = match_palette(shape_colours(images, record), PALETTE, self.tolerance)
            wanted = np.asarray([COLOUR_BY_TYPE[s["type"]] for s in record["shapes"]])
            correct += int((matches == wanted[None, :]).sum())
            total += matches.size
        return MetricResult({"colour_accuracy": correct / total if total else 0.0},
                            {"rule": f"within {self.tolerance} (RGB in [0,1]) of the type's colour"})


def foreground_mask(image: torch.Tensor, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """Pixels of a uint8 image (C, H, W) that are not white: some channel below ``1 - threshold``."""
    values = image.float().numpy() / 255.0
    return (values.min(0) < 1.0 - threshold)


def shape_ious(images: torch.Tensor, record: dict[str, Any], threshold: float = FOREGROUND_THRESHOLD) -> list[float]:
    """IoU of each uint8 sample's painted (non-white) pixels with the record's shapes: (K, C, H, W) -> K values.

    Below 1 where shapes come out with holes or ragged edges, or where paint lands off every shape.
    """
    from ganzoo.data.shapes import shape_mask

    size = images.shape[-1]
    truth = np.zeros((size, size), dtype=bool)
    for shape in record["shapes"]:
        truth |= shape_mask(shape, int(record["image_size"]), scale=size / int(record["image_size"]))
    ious = []
    for image in images:
        found = foreground_mask(image, threshold)
        union = (found | truth).sum()
        ious.append(float((found & truth).sum() / union) if union else 1.0)
    return ious


@register("metric", "palette_transfer")
class PaletteTransfer(Metric):
    """Shapes recoloured into the other domain's palette, and IoU of output shapes with input shapes (shapes-unpaired)."""

    def __init__(self, tolerance: float = PALETTE_TOLERANCE, foreground_threshold: float = FOREGROUND_THRESHOLD
                 ) -> None:
        self.tolerance = float(tolerance)
        self.foreground_threshold = float(foreground_threshold)

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return _needs(ctx, ("shapes-unpaired",))

    def compute(self, ctx: EvalContext) -> MetricResult:
        from ganzoo.data.shapes import COOL_PALETTE, WARM_PALETTE

        target = COOL_PALETTE if ctx.direction == "AtoB" else WARM_PALETTE
        transferred = total = 0
        ious: list[float] = []
        for images, record in zip(ctx.samples(), ctx.records() or []):
            ious += shape_ious(images, record, self.foreground_threshold)
            if record["shapes"]:
                matches = match_palette(shape_colours(images, record), target, self.tolerance)
                transferred += int((matches >= 0).sum())
                total += matches.size
        return MetricResult(
            {"palette_transfer": transferred / total if total else 0.0, "shape_iou": float(np.mean(ious))},
            {"target_palette": "cool" if ctx.direction == "AtoB" else "warm",
             "rule": f"within {self.tolerance} (RGB in [0,1]) of a target-palette colour; foreground: a channel "
                     f"below {1 - self.foreground_threshold:.2f}"})


__all__ = ["PALETTE_TOLERANCE", "ColourAccuracy", "ModeCoverage", "PaletteTransfer", "coverage_statistics",
           "foreground_mask", "match_palette", "shape_colours", "shape_ious"]
