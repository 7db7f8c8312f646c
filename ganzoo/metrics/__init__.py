"""Evaluation metrics, registered in the ``metric`` registry; one module per family.

- :mod:`~ganzoo.metrics.diversity`: ``diversity`` (LPIPS between consecutive samples, BicycleGAN paper);
- :mod:`~ganzoo.metrics.realism`: ``fid``, ``kid`` (torchmetrics, InceptionV3 features);
- :mod:`~ganzoo.metrics.faithfulness`: ``reconstruction`` (L1/PSNR/SSIM), ``latent_recovery``, ``cycle``;
- :mod:`~ganzoo.metrics.shapes`: ``mode_coverage``, ``colour_accuracy``, ``palette_transfer`` on the shapes world.

:func:`ganzoo.evaluation.evaluate` runs them over a data split.
"""
from ganzoo.metrics import diversity, faithfulness, realism, shapes  # noqa: F401  (registers the metrics)
from ganzoo.metrics.base import EvalContext, Metric, MetricResult, MetricUnavailable

__all__ = ["EvalContext", "Metric", "MetricResult", "MetricUnavailable"]
