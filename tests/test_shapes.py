"""The shapes world: determinism, metadata that matches the pixels, flavour rules, safe writing, CLI."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ganzoo.cli.data_cmd  # noqa: F401  (attaches `ganzoo data`)
from ganzoo.cli.app import main
from ganzoo.data import shapes
from ganzoo.data.shapes import (
    COLOUR_BY_TYPE,
    COOL_PALETTE,
    PALETTE,
    SHAPE_TYPES,
    WARM_PALETTE,
    ensure_shapes,
    generate_shapes,
    interior_colours,
    load_meta,
    outline_width,
    shape_mask,
)
from ganzoo.errors import DataError

SIZE = 32
SMALL = {"size": SIZE, "n_train": 24, "n_val": 4, "n_test": 3}


@pytest.fixture(scope="module")
def multimodal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("mm") / "shapes", flavour="shapes-multimodal", seed=3, **SMALL)


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("up") / "shapes", flavour="shapes-unpaired", seed=3, **SMALL)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def halves(root: Path, split: str, record: dict) -> tuple[np.ndarray, np.ndarray]:
    pair = np.array(Image.open(root / split / record["file"]).convert("RGB"))
    return pair[:, :SIZE], pair[:, SIZE:]


def test_layout_and_spec_file(multimodal: Path, unpaired: Path) -> None:
    assert sorted(p.name for p in multimodal.iterdir()) == ["shapes.json", "test", "train", "val"]
    assert len(list((multimodal / "train").glob("*.png"))) == 24
    assert Image.open(multimodal / "train" / "00000.png").size == (2 * SIZE, SIZE)
    info = json.loads((multimodal / "shapes.json").read_text())
    assert (info["flavour"], info["size"], info["seed"], info["layout"]) == ("shapes-multimodal", SIZE, 3, "aligned")
    assert info["palettes"]["palette"]["rgb"] == [list(c) for c in PALETTE]
    assert sorted(p.name for p in unpaired.iterdir()) == [
        "shapes.json", "testA", "testB", "trainA", "trainB", "valA", "valB"]
    assert Image.open(unpaired / "trainB" / "00000.png").size == (SIZE, SIZE)
    assert len(load_meta(unpaired, "valB")) == 4


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    spec = {"size": SIZE, "n_train": 6, "n_val": 2, "n_test": 0}
    first = files_of(generate_shapes(tmp_path / "a", seed=7, **spec))
    again = files_of(generate_shapes(tmp_path / "b", seed=7, **spec))
    other = files_of(generate_shapes(tmp_path / "c", seed=8, **spec))
    assert first == again
    assert first.keys() == other.keys()
    images = [k for k in first if k.endswith(".png")]
    assert sum(first[k] != other[k] for k in images) >= len(images) - 1


def test_val_split_does_not_depend_on_train_count(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", size=SIZE, n_train=3, n_val=2, n_test=0)
    b = generate_shapes(tmp_path / "b", size=SIZE, n_train=5, n_val=2, n_test=0)
    assert load_meta(a, "val") == load_meta(b, "val")


def test_meta_matches_pixels(multimodal: Path) -> None:
    records = load_meta(multimodal, "train")
    assert len(records) == 24
    for record in records:
        a, b = halves(multimodal, "train", record)
        assert record["image_size"] == SIZE and 1 <= len(record["shapes"]) <= 3
        footprint = np.zeros((SIZE, SIZE), dtype=bool)
        for shape in record["shapes"]:
            assert shape["type"] in SHAPE_TYPES
            assert tuple(shape["colour"]) == PALETTE[shape["colour_index"]]
            mask = shape_mask(shape, SIZE)
            assert not (mask & footprint).any(), "shapes overlap"
            footprint |= mask
            # B: every pixel of the shape has its recorded colour.
            assert (b[mask] == shape["colour"]).all()
            # A: the outline's extent is exactly the recorded bounding box, and the inside is white.
            dark = (a.min(axis=2) < 128) & mask
            rows, cols = np.nonzero(dark)
            x, y, half = shape["x"], shape["y"], shape["size"]
            assert (rows.min(), rows.max(), cols.min(), cols.max()) == (y - half, y + half, x - half, x + half)
            inside = shape_mask(shape, SIZE, erode=outline_width(SIZE))
            assert inside.any() and (a[inside] == 255).all()
        assert (b[~footprint] == 255).all(), "B has colour outside the recorded shapes"
        assert (a[~footprint] == 255).all(), "A has ink outside the recorded shapes"
        assert set(np.unique(a)) <= {0, 255} and (a[..., 0] == a[..., 2]).all(), "A must look like 1 channel"
        # Bounding boxes keep a gap, so even outlines never touch.
        for s, t in itertools.combinations(record["shapes"], 2):
            reach = s["size"] + t["size"] + 2
            assert abs(s["x"] - t["x"]) > reach or abs(s["y"] - t["y"]) > reach


def test_multimodal_colours_cover_the_palette(multimodal: Path) -> None:
    used = {s["colour_index"] for r in load_meta(multimodal, "train") for s in r["shapes"]}
    assert used == set(range(len(PALETTE)))
    types = {s["type"] for r in load_meta(multimodal, "train") for s in r["shapes"]}
    assert types == set(SHAPE_TYPES)


def test_deterministic_flavour_colours_by_type_with_the_same_geometry(tmp_path: Path, multimodal: Path) -> None:
    root = generate_shapes(tmp_path / "det", flavour="shapes-deterministic", seed=3, **SMALL)
    records = load_meta(root, "train")
    for record in records:
        for shape in record["shapes"]:
            assert shape["colour_index"] == COLOUR_BY_TYPE[shape["type"]]
            assert tuple(shape["colour"]) == PALETTE[COLOUR_BY_TYPE[shape["type"]]]
    geometry = [[(s["type"], s["x"], s["y"], s["size"]) for s in r["shapes"]] for r in records]
    assert geometry == [[(s["type"], s["x"], s["y"], s["size"]) for s in r["shapes"]]
                        for r in load_meta(multimodal, "train")]
    assert json.loads((root / "shapes.json").read_text())["colour_by_type"] == COLOUR_BY_TYPE


def test_unpaired_domains_are_warm_and_cool_with_independent_geometry(unpaired: Path) -> None:
    for folder, palette in (("trainA", WARM_PALETTE), ("trainB", COOL_PALETTE)):
        for record in load_meta(unpaired, folder):
            pixels = np.asarray(Image.open(unpaired / folder / record["file"]).convert("RGB")).astype(int)
            ink = pixels.min(axis=2) < 255
            red, blue = pixels[ink][:, 0], pixels[ink][:, 2]
            assert ((red > blue) if palette is WARM_PALETTE else (blue > red)).all()
            for shape in record["shapes"]:
                assert tuple(shape["colour"]) == palette[shape["colour_index"]]
                assert (pixels[shape_mask(shape, SIZE)] == shape["colour"]).all()
    assert load_meta(unpaired, "trainA") != load_meta(unpaired, "trainB")


def test_palettes_are_well_separated() -> None:
    assert len(PALETTE) == 8 and len(set(PALETTE)) == 8
    extremes = [(255, 255, 255), (0, 0, 0)]
    for a, b in itertools.combinations(list(PALETTE) + extremes, 2):
        assert math.dist(a, b) >= 140
    assert all(r > b for r, _, b in WARM_PALETTE) and all(b > r for r, _, b in COOL_PALETTE)


def test_interior_colours_recover_the_palette_from_images_arrays_and_tensors(multimodal: Path) -> None:
    for record in load_meta(multimodal, "val"):
        _, b = halves(multimodal, "val", record)
        expected = [tuple(float(c) for c in s["colour"]) for s in record["shapes"]]
        assert interior_colours(b, record) == expected
        assert interior_colours(Image.fromarray(b), record) == expected
        tensor = torch.from_numpy(b).permute(2, 0, 1).float() / 127.5 - 1.0  # what the datasets return
        assert np.allclose(interior_colours(tensor, record), expected, atol=1e-3)
        bigger = np.asarray(Image.fromarray(b).resize((4 * SIZE, 4 * SIZE), Image.BICUBIC))
        assert np.allclose(interior_colours(bigger, record), expected, atol=2.0)


def test_ensure_shapes_generates_once_and_rejects_another_spec(tmp_path: Path) -> None:
    root = tmp_path / "s"
    spec = {"size": SIZE, "n_train": 3, "n_val": 1, "n_test": 1, "seed": 1}
    assert ensure_shapes(root, **spec) == root
    stamp = (root / "train" / "00000.png").stat().st_mtime_ns
    assert ensure_shapes(root, **spec) == root
    assert (root / "train" / "00000.png").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match=r"different shapes dataset: seed=1 \(wanted 2\)"):
        ensure_shapes(root, **{**spec, "seed": 2})
    with pytest.raises(DataError, match="unknown argument"):
        ensure_shapes(root, colour="red")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a generated shapes dataset"):
        ensure_shapes(other, **spec)


def test_generation_never_leaves_a_half_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shapes._write_folder

    def fail_on_val(folder: Path, name: str, *args: object) -> None:
        if name == "val":
            raise KeyboardInterrupt
        real(folder, name, *args)

    monkeypatch.setattr(shapes, "_write_folder", fail_on_val)
    with pytest.raises(KeyboardInterrupt):
        generate_shapes(tmp_path / "s", size=SIZE, n_train=2, n_val=1, n_test=0)
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_to_clobber_unless_asked(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "s", size=SIZE, n_train=2, n_val=0, n_test=0)
    with pytest.raises(DataError, match="already exists"):
        generate_shapes(root, size=SIZE, n_train=3, n_val=0, n_test=0)
    generate_shapes(root, size=SIZE, n_train=3, n_val=0, n_test=0, overwrite=True)
    assert len(load_meta(root, "train")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_bad_arguments_and_missing_meta_are_data_errors(tmp_path: Path, multimodal: Path) -> None:
    with pytest.raises(DataError, match="unknown shapes flavour") as info:
        generate_shapes(tmp_path / "x", flavour="shapes-multimodel")
    assert "shapes-multimodal" in str(info.value)
    with pytest.raises(DataError, match="size: expected an integer >= 16"):
        generate_shapes(tmp_path / "x", size=8)
    with pytest.raises(DataError, match=r"no shapes metadata at .*trian"):
        load_meta(multimodal, "trian")


def test_cli_writes_reuses_and_reports_mismatch(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["data", "shapes", str(out), "--flavour", "shapes-unpaired", "--size", "32",
            "--n-train", "4", "--n-val", "0", "--n-test", "2", "--seed", "5"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote 12 images" in result.output and "trainA" in result.output
    assert len(list((out / "testB").glob("*.png"))) == 2
    result = runner.invoke(main, args)
    assert result.exit_code == 0 and "nothing written" in result.output
    result = runner.invoke(main, args[:-1] + ["6"])
    assert result.exit_code == DataError.exit_code
    assert "different shapes dataset" in result.output and "--overwrite" in result.output
    result = runner.invoke(main, args[:-1] + ["6", "--overwrite"])
    assert result.exit_code == 0 and json.loads((out / "shapes.json").read_text())["seed"] == 6
