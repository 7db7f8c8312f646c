"""Realism: FID and KID of the samples against the split's real targets (torchmetrics).

The feature network is torch-fidelity's TF-compatible InceptionV3 (2048-d pool features; images
are resized inside it to 299x299, bilinear), the one the FID literature uses. Its weights are
never downloaded here: they are read from ``inception_weights=PATH``, the ``GANZOO_INCEPTION_WEIGHTS``
environment variable or the torch hub cache, otherwise an error says what to download and where.
Any ``nn.Module`` mapping uint8 images (N, 3, H, W) to features (N, D) can replace it
(``build("metric", "fid", feature=net)``), which is how the tests run without weights.

Fakes are all N x K samples, reals the N targets of the same inputs; both counts are recorded,
as FID is biased by N (compare scores only at equal N).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.metrics.base import EvalContext, Metric, MetricResult, MetricUnavailable, find_weight_file
from ganzoo.metrics.weights import read_state_dict, wrong_weights
from ganzoo.registry import register

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
ENV_INCEPTION = "GANZOO_INCEPTION_WEIGHTS"
INCEPTION_RESIZE = "299x299 bilinear inside torch-fidelity's InceptionV3 (TF-compatible)"


def inception_url() -> str:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        return str(URL_INCEPTION_V3)
    except ImportError:
        return f"the torch-fidelity release file {INCEPTION_FILE}"


def find_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The local InceptionV3 weight file for FID/KID; a MetricUnavailable saying how to get it."""
    return find_weight_file("FID/KID (InceptionV3)", INCEPTION_FILE, path=path, env=ENV_INCEPTION,
                            url=inception_url(), option="--inception-weights")


#: What a wrong file is told it is not.
INCEPTION_EXPECTED = f"the InceptionV3 weights FID/KID need (torch-fidelity's {INCEPTION_FILE})"


def _safe_weights(path: Path) -> None:
    # torch-fidelity loads the file with weights_only=False: check first that it is plain tensors (a file
    # carrying code is refused unread) and looks like its InceptionV3, so a wrong file is one clear line.
    read_state_dict(path, INCEPTION_EXPECTED,
                    required=("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight"))


def _first_problem(exc: BaseException) -> str:
    """What a ``load_state_dict`` error says is wrong first, in a few words (its key lists counted)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else (lines or [""])[0]
    keys = re.findall(r'"([^"]+)"', line)
    if keys and ":" in line:
        line = f"{line.split(':', 1)[0].lower()}: {len(keys)}, e.g. {keys[0]!r}"
    return line if len(line) <= 160 else line[:157] + "..."


def _rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]


class _FeatureMetric(Metric):
    """Shared by FID and KID: the feature network, the real and fake image sets."""

    def __init__(self, feature: nn.Module | None = None, inception_weights: str | None = None,
                 batch_size: int = 50) -> None:
        self.feature = feature
        self.inception_weights = inception_weights
        self.batch_size = batch_size

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return None if ctx.has_targets() else "the data has no real targets B"

    def feature_network(self) -> tuple[nn.Module, dict[str, Any]]:
        """The feature network handed to torchmetrics, and what to record about it."""
        if self.feature is not None:
            return self.feature, {"feature_network": type(self.feature).__name__, "resize": "none (custom)"}
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise MetricUnavailable("FID/KID need the 'torch-fidelity' package for InceptionV3",
                                    hint="pip install torch-fidelity") from None
        path = find_inception_weights(self.inception_weights)
        _safe_weights(path)
        from torchmetrics.image.fid import NoTrainInceptionV3

        # Built here from the local file and handed over as a module: torchmetrics' own KID path
        # would fetch the weights from the internet when they are not in the hub cache.
        try:
            network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                         feature_extractor_weights_path=str(path))
        except RuntimeError as exc:  # tensors of another network (torchvision's InceptionV3, say)
            raise wrong_weights(path, INCEPTION_EXPECTED,
                                f"its tensors do not fit that network ({_first_problem(exc)})") from None
        network.num_features = 2048
        return network, {"feature_network": "InceptionV3 (torch-fidelity inception-v3-compat), pool3 2048-d",
                             "weights": path.name, "resize": INCEPTION_RESIZE}

    def feed(self, metric: Any, ctx: EvalContext) -> tuple[int, int]:
        reals = (_rgb_uint8(((ctx.targets().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)))
        fakes = _rgb_uint8(ctx.samples().flatten(0, 1))
        for chunk in reals.split(self.batch_size):
            metric.update(chunk.to(ctx.device), real=True)
        for chunk in fakes.split(self.batch_size):
            metric.update(chunk.to(ctx.device), real=False)
        return reals.shape[0], fakes.shape[0]


def _torchmetrics_image() -> Any:
    try:
        import torchmetrics.image as image
    except ImportError:
        raise MetricUnavailable("FID/KID need the 'torchmetrics' package", hint="pip install torchmetrics") from None
    return image


@register("metric", "fid")
class FID(_FeatureMetric):
    """Fréchet Inception Distance of all samples against the split's targets (torchmetrics)."""

    def compute(self, ctx: EvalContext) -> MetricResult:
        feature, info = self.feature_network()
        metric = _torchmetrics_image().FrechetInceptionDistance(feature=feature, normalize=False)
        n_real, n_fake = self.feed(metric.to(ctx.device), ctx)
        return MetricResult({"fid": float(metric.compute())}, {**info, "n_real": n_real, "n_fake": n_fake})


@register("metric", "kid")
class KID(_FeatureMetric):
    """Kernel Inception Distance (mean and std over subsets) of all samples against the targets (torchmetrics).

    Args:
        subset_size: images per KID subset (capped at the smaller set's size).
        subsets: number of random subsets.
    """

    def __init__(self, feature: nn.Module | None = None, inception_weights: str | None = None,
                 batch_size: int = 50, subset_size: int = 1000, subsets: int = 100) -> None:
        super().__init__(feature, inception_weights, batch_size)
        self.subset_size = subset_size
        self.subsets = subsets

    def compute(self, ctx: EvalContext) -> MetricResult:
        feature, info = self.feature_network()
        size = min(self.subset_size, ctx.num_inputs, ctx.num_inputs * ctx.num_z)
        if size < 2:
            raise MetricUnavailable("KID needs at least 2 real images (--num-inputs >= 2)")
        with warnings.catch_warnings():  # the feature-buffer size warning: N is small here by design
            warnings.simplefilter("ignore", UserWarning)
            metric = _torchmetrics_image().KernelInceptionDistance(feature=feature, normalize=False,
                                                                   subset_size=size, subsets=self.subsets)
        n_real, n_fake = self.feed(metric.to(ctx.device), ctx)
        with torch.random.fork_rng(devices=[]):  # the random subsets, reproducibly and without touching global RNG
            torch.manual_seed(ctx.seed)
            mean, std = metric.compute()
        return MetricResult({"kid": float(mean), "kid_std": float(std)},
                            {**info, "n_real": n_real, "n_fake": n_fake, "subset_size": size,
                             "subsets": self.subsets})


__all__ = ["FID", "KID", "find_inception_weights"]
