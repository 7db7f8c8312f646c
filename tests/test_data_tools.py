"""`ganzoo data check` and `ganzoo data edges`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from ganzoo.cli import main
from ganzoo.data.aligned import AlignedDataset
from ganzoo.data.check import check_dataset
from ganzoo.data.edges import EdgeSettings, detect_edges
from ganzoo.data.transforms import Preprocess
from ganzoo.errors import DataError


def save(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def test_aligned_check_counts_sizes_and_problems(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / "train" / f"{i}.png", (64, 32))
    save(tmp_path / "train" / "gray.png", (64, 32), "L")
    save(tmp_path / "train" / "odd.png", (63, 32))
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save(tmp_path / "val" / "0.png", (64, 32))
    report = check_dataset(tmp_path, "aligned", preprocess=Preprocess("resize_and_crop", 40, 32))
    train = report.folders["train"]
    assert train.count == 6
    assert train.sizes[(64, 32)] == 4 and train.sizes[(63, 32)] == 1
    assert train.modes == {"RGB": 4, "L": 1}
    assert [Path(p).name for p, _ in train.unreadable] == ["broken.png"]
    assert [Path(p).name for p in train.odd_width] == ["odd.png"]
    assert report.folders["val"].count == 1
    assert not report.ok
    assert any("broken.png" in p for p in report.problems) and any("odd width" in p for p in report.problems)
    assert any("mixes image modes" in r for r in report.remarks)
    plan = report.preprocessing[0]
    assert "32x32" in plan and "resized to 40x40" in plan and "random 32x32 crop" in plan


def test_crop_larger_than_the_images_is_a_problem(tmp_path: Path) -> None:
    save(tmp_path / "train" / "0.png", (64, 32))
    report = check_dataset(tmp_path, "aligned", preprocess=Preprocess("crop", 286, 256))
    assert any("crop_size 256 is larger" in p for p in report.problems)


def test_unaligned_check_finds_missing_partners_and_mismatches(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / "trainA" / f"{i}.jpg", (32, 32))
    save(tmp_path / "trainB" / "0.png", (48, 48), "L")
    save(tmp_path / "testA" / "0.png", (32, 32))
    report = check_dataset(tmp_path, "unaligned")
    assert set(report.folders) == {"trainA", "trainB", "testA"}
    assert report.problems == ["testA/ has no partner folder testB/"]
    remarks = " ".join(report.remarks)
    assert "3 A images vs 1 B images" in remarks
    assert "channel" in remarks and "48x48" in remarks


def test_wrong_layout_suggests_the_other(tmp_path: Path) -> None:
    save(tmp_path / "trainA" / "0.png", (32, 32))
    with pytest.raises(DataError, match="no aligned split folders") as info:
        check_dataset(tmp_path, "aligned")
    assert "--layout unaligned" in (info.value.hint or "")


def test_check_cli_exit_codes_and_json(tmp_path: Path) -> None:
    save(tmp_path / "good" / "train" / "0.png", (64, 32))
    result = CliRunner().invoke(main, ["data", "check", str(tmp_path / "good"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["folders"]["train"]["count"] == 1
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "x.png").write_bytes(b"nope")
    result = CliRunner().invoke(main, ["data", "check", str(tmp_path / "bad")], terminal_width=200)
    assert result.exit_code == 1
    assert "problem" in result.output and "x.png" in result.output
    result = CliRunner().invoke(main, ["data", "check", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def shape_photo(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(40, 80, 200))
    return image


def test_edges_trace_the_outline_of_a_shape_as_thin_black_lines() -> None:
    edges = np.asarray(detect_edges(shape_photo(64)))
    assert edges.dtype == np.uint8 and set(np.unique(edges)) <= {0, 255}
    ys, xs = np.nonzero(edges == 0)
    assert len(ys) > 0
    # Every edge pixel lies within 2 px of the square's border (16..48), none in the flat areas.
    near_border = (np.minimum(np.abs(ys - 16), np.abs(ys - 47)) <= 2) | (np.minimum(np.abs(xs - 16), np.abs(xs - 47)) <= 2)
    inside_band = (ys >= 13) & (ys <= 50) & (xs >= 13) & (xs <= 50)
    assert np.all(near_border & inside_band)
    # Thin: about one pixel per unit of perimeter (4 sides of 32 px), not a thick band.
    assert 100 <= len(ys) <= 2.0 * 128
    blank = np.asarray(detect_edges(Image.new("RGB", (32, 32), (90, 90, 90))))
    assert (blank == 255).all()


def test_edge_settings_are_validated() -> None:
    with pytest.raises(DataError, match="low < high"):
        EdgeSettings(low=0.5, high=0.2)


def test_edges_cli_builds_an_aligned_dataset(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(4):
        path = photos / ("sub" if i % 2 else "") / f"p{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        shape_photo(80).crop((0, 0, 80, 60 + i)).save(path)
    out = tmp_path / "edges2photos"
    result = CliRunner().invoke(main, ["data", "edges", str(photos), str(out), "--size", "32",
                                       "--val-fraction", "0.25"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "train").glob("*.png"))) == 3 and len(list((out / "val").glob("*.png"))) == 1
    dataset = AlignedDataset(out, "train", load_size=32, crop_size=32, preprocess="none", flip=False)
    item = dataset[0]
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    assert item["A"].max() == 1.0 and item["A"].min() == -1.0  # white paper, black lines
    again = CliRunner().invoke(main, ["data", "edges", str(photos), str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
