"""Metric properties, without downloads: identical sets, z ignored, ground truth and palette-perfect samples."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image, ImageDraw

from ganzoo.data.shapes import PALETTE, draw_shape, generate_shapes, load_meta
from ganzoo.errors import GanzooError
from ganzoo.evaluation import evaluate, flat_scores, metric_names
from ganzoo.metrics.base import EvalContext, MetricUnavailable
from ganzoo.metrics.diversity import find_backbone_weights, load_lpips, lpips_distance
from ganzoo.metrics.realism import find_inception_weights
from ganzoo.metrics.shapes import coverage_statistics, match_palette
from ganzoo.registry import build

SIZE = 32


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory):
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "w", "shapes-multimodal", size=SIZE, n_train=1,
                           n_val=12, n_test=0, seed=3)


def _b_images(root) -> tuple[torch.Tensor, list[dict]]:
    records = load_meta(root, "val")
    images = []
    for record in records:
        pair = np.asarray(Image.open(root / "val" / record["file"]).convert("RGB"))
        images.append(torch.from_numpy(pair[:, SIZE:].copy()).permute(2, 0, 1))
    return torch.stack(images), records


def _painted(record: dict, colour: tuple[int, int, int]) -> torch.Tensor:
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    for shape in record["shapes"]:
        draw_shape(ImageDraw.Draw(image), shape, fill=colour)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def test_ground_truth_covers_one_colour_per_shape(shapes_root) -> None:
    images, records = _b_images(shapes_root)
    stats = coverage_statistics(images.unsqueeze(1), records)
    assert stats["mode_coverage"] == 1.0
    assert stats["on_palette"] == 1.0


def test_model_painting_every_palette_colour_covers_eight(shapes_root) -> None:
    _, records = _b_images(shapes_root)
    samples = torch.stack([torch.stack([_painted(r, c) for c in PALETTE]) for r in records])
    stats = coverage_statistics(samples, records)
    assert stats["mode_coverage"] == 8.0
    assert stats["colours_per_input"] == 8.0
    # every sample paints all its shapes alike: no colour independence at all
    assert stats["same_colour_fraction"] == 1.0


def test_mode_coverage_separates_diversity_from_colour_precision(shapes_root) -> None:
    _, records = _b_images(shapes_root)
    # Every palette colour, each 0.2 off in green: diverse but imprecise samples.
    off = [tuple(int(v) for v in np.clip(np.asarray(c) + np.array([0, 51, 0]) * (1 if c[1] < 128 else -1), 0, 255))
           for c in PALETTE]
    samples = torch.stack([torch.stack([_painted(r, c) for c in off]) for r in records])
    context = SimpleNamespace(samples=lambda: samples, records=lambda: records, num_inputs=len(records), num_z=8)
    stats = build("metric", "mode_coverage").compute(context).values
    assert stats["mode_coverage"] == 0.0 and stats["on_palette"] == 0.0
    assert stats["nearest_colour_coverage"] == 8.0
    assert stats["same_nearest_colour_fraction"] == 1.0  # each sample paints all its shapes alike


def test_shape_iou_is_one_on_the_data_and_falls_with_paint_off_the_shapes(shapes_root) -> None:
    images, records = _b_images(shapes_root)
    context = SimpleNamespace(samples=lambda: images.unsqueeze(1), records=lambda: records, num_inputs=len(records),
                              num_z=1)
    assert build("metric", "mode_coverage").compute(context).values["shape_iou"] == 1.0
    # the same images with a stray 6x6 blob in a corner that no shape reaches
    stained = images.clone()
    for image, record in zip(stained, records):
        corner = next((x, y) for x, y in ((0, 0), (26, 0), (0, 26), (26, 26))
                      if all(abs(s["x"] - x - 3) > s["size"] + 3 or abs(s["y"] - y - 3) > s["size"] + 3
                             for s in record["shapes"]))
        image[:, corner[1]:corner[1] + 6, corner[0]:corner[0] + 6] = torch.tensor([220, 40, 220])[:, None, None]
    context = SimpleNamespace(samples=lambda: stained.unsqueeze(1), records=lambda: records, num_inputs=len(records),
                              num_z=1)
    stats = build("metric", "mode_coverage").compute(context).values
    assert 0.3 < stats["shape_iou"] < 0.95
    assert stats["on_palette"] == 1.0  # the colours of the shapes themselves are untouched


def test_palette_tolerance_is_012_in_unit_rgb() -> None:
    red = np.asarray(PALETTE[0], dtype=float)
    near = red + np.array([0.0, 0.11 * 255, 0.0])
    far = red + np.array([0.0, 0.13 * 255, 0.0])
    assert match_palette(np.stack([near, far]), PALETTE).tolist() == [0, -1]


class _Tiny(nn.Module):
    """A random feature network for FID/KID tests (uint8 images in, 16 features out)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x.float() / 127.5 - 1)).mean((2, 3))


class _Stub(nn.Module):
    """A model stand-in: one output per input equal to the input, or K copies ignoring z (``nz > 0``)."""

    def __init__(self, nz: int = 0, use_z: bool = False) -> None:
        super().__init__()
        self.nz = nz
        self.use_z = use_z
        self.networks = nn.ModuleDict({"G": nn.Identity()})  # G(A) = A, as sample() says
        self.anchor = nn.Parameter(torch.zeros(1))  # tells the context which device the model is on

    def sample(self, A: torch.Tensor, z: torch.Tensor | None = None, num_z: int = 1) -> torch.Tensor:
        if self.nz == 0:
            return A.unsqueeze(1)
        out = A.unsqueeze(1).repeat(1, z.shape[0], 1, 1, 1)
        if self.use_z:
            out = out + 0.5 * z[None, :, :3, None, None]
        return out.clamp(-1, 1)


def _dataset(n: int = 6, size: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        image = torch.rand(3, size, size, generator=g) * 2 - 1
        items.append({"A": image, "B": image.clone(), "A_path": f"/nowhere/{i}.png", "B_path": ""})
    return items


def _realism(data: list[dict]) -> dict[str, float]:
    result = evaluate(_Stub(), dataset=data, metrics=["fid", "kid", "reconstruction"],
                      metric_options={"fid": {"feature": _Tiny()}, "kid": {"feature": _Tiny()}})
    assert result["metrics"]["fid"]["info"]["n_real"] == len(data)
    return flat_scores(result)


def test_identical_sets_give_fid_near_zero_and_different_sets_do_not() -> None:
    same = _realism(_dataset(8))
    data = _dataset(8)
    for item in data:
        item["B"] = -item["A"]
    different = _realism(data)
    assert abs(same["fid.fid"]) < 1e-3 < different["fid.fid"]
    # KID (an unbiased estimate, very noisy on 8 images) is only checked to run and report its spread
    assert np.isfinite(same["kid.kid"]) and same["kid.kid_std"] >= 0.0
    assert same["reconstruction.l1"] == 0.0 and same["reconstruction.ssim"] == pytest.approx(1.0)
    assert different["reconstruction.l1"] > 0.1


def test_diversity_is_zero_when_z_is_ignored_and_positive_when_used() -> None:
    distance = lpips_distance(load_lpips("alex", "0.0", random_backbone=True))
    options = {"diversity": {"distance": distance}}
    still = evaluate(_Stub(nz=8), dataset=_dataset(3, 64), metrics=["diversity"], num_z=4,
                     metric_options=options)
    moving = evaluate(_Stub(nz=8, use_z=True), dataset=_dataset(3, 64), metrics=["diversity"], num_z=4,
                      metric_options=options)
    assert still["metrics"]["diversity"]["lpips"] == 0.0
    assert moving["metrics"]["diversity"]["lpips"] > 0.0
    assert still["metrics"]["diversity"]["info"]["pairs"] == 3 * 3  # 3 inputs x (4 - 1) consecutive pairs


def test_missing_weights_say_what_to_download_and_where(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GANZOO_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("GANZOO_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MetricUnavailable) as lpips_error:
        find_backbone_weights("alex")
    assert "alexnet-owt-7be5be79.pth" in str(lpips_error.value)
    assert str(tmp_path / "hub" / "checkpoints") in str(lpips_error.value)
    with pytest.raises(MetricUnavailable) as fid_error:
        find_inception_weights()
    assert "inception" in str(fid_error.value).lower() and "download" in str(fid_error.value)
    # by default an unavailable metric is reported, not fatal; named explicitly it is an error
    result = evaluate(_Stub(nz=8), dataset=_dataset(2), metrics=None, num_z=2)
    assert "diversity" in result["unavailable"]
    with pytest.raises(MetricUnavailable):
        evaluate(_Stub(nz=8), dataset=_dataset(2), metrics=["diversity"], num_z=2)


def test_explicit_metric_that_does_not_apply_and_unknown_metric_are_errors() -> None:
    with pytest.raises(GanzooError, match="does not apply"):
        evaluate(_Stub(), dataset=_dataset(2), metrics=["mode_coverage"])
    with pytest.raises(GanzooError, match="unknown metric") as error:
        evaluate(_Stub(), dataset=_dataset(2), metrics=["mode_coverag"])
    assert "mode_coverage" in str(error.value)
    assert {"diversity", "fid", "kid", "mode_coverage", "palette_transfer", "cycle"} <= set(metric_names())


def test_samples_are_seeded_and_independent_per_input() -> None:
    model = _Stub(nz=8, use_z=True)
    a = EvalContext(model, _dataset(2), num_inputs=2, num_z=3, seed=5)
    b = EvalContext(model, _dataset(2), num_inputs=2, num_z=3, seed=5)
    assert torch.equal(a.latents(), b.latents())
    assert not torch.equal(a.latents()[0], a.latents()[1])
    assert a.samples().dtype == torch.uint8 and a.samples().shape == (2, 3, 3, 16, 16)
