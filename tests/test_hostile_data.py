"""Datasets a hostile (or unlucky) user can hand ganzoo (issue #28, items 7, 8, 9, 14 and 15's archives).

Symbolic-link loops, FIFOs named ``*.png``, decompression bombs, images of mixed sizes, a read-only
``data.root`` and archives that unpack to far more than they weigh: each is one clear DataError
naming the file (exit code 2), never a hang, a traceback or a silently inflated dataset.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from fault_injection import tiny_recipe, write_recipe
from ganzoo.cli import main as ganzoo_main
from ganzoo.data import download as download_module
from ganzoo.data.check import check_dataset
from ganzoo.data.images import list_images, read_image
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import DataError


def invoke(args: list[str]) -> Any:
    return CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, args)


class Hang(BaseException):
    """Raised by :func:`time_limit`; a BaseException, so that no ``except OSError`` (os.walk's, PIL's)
    swallows it the way it would swallow a TimeoutError."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""
    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"took more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def pairs(folder: Path, n: int, size: tuple[int, int] = (64, 32), start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"{i:03d}.png"
        Image.new("RGB", size, (i * 20 % 255, 80, 160)).save(path)
        paths.append(path)
    return paths


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A 100-byte PNG that declares a side x side image (900 M pixels): PIL refuses it when opened."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# -- item 7: symbolic-link loops ---------------------------------------------------------------------
def test_a_link_loop_lists_every_image_once(tmp_path: Path) -> None:
    real = pairs(tmp_path / "train", 3)
    (tmp_path / "train" / "loop").symlink_to(".")
    with time_limit(10):
        assert list_images(tmp_path / "train") == real
        report = check_dataset(tmp_path)
    assert report.folders["train"].count == 3


def test_two_link_loops_do_not_hang_listing_or_check(tmp_path: Path) -> None:
    pairs(tmp_path / "train" / "sub", 2)
    (tmp_path / "train" / "sub" / "up1").symlink_to("..")
    (tmp_path / "train" / "sub" / "up2").symlink_to("..")
    (tmp_path / "train" / "self").symlink_to(".")
    with time_limit(10):
        assert len(list_images(tmp_path / "train")) == 2
        assert check_dataset(tmp_path).folders["train"].count == 2


def test_a_link_to_a_real_folder_elsewhere_is_still_followed(tmp_path: Path) -> None:
    elsewhere = pairs(tmp_path / "pool", 2)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "pool").symlink_to(tmp_path / "pool")
    assert [p.name for p in list_images(tmp_path / "train")] == [p.name for p in elsewhere]


# -- item 8: FIFOs (and other special files) named like images ------------------------------------
def test_a_fifo_named_png_never_blocks_listing_reading_checking_or_sample(tmp_path: Path) -> None:
    pairs(tmp_path / "train", 2)
    fifo = tmp_path / "train" / "zz_pipe.png"
    os.mkfifo(fifo)
    with time_limit(10):
        assert fifo not in list_images(tmp_path / "train")
        with pytest.raises(DataError, match=r"zz_pipe\.png is a FIFO"):
            read_image(fifo)
        report = check_dataset(tmp_path)
        result = invoke(["sample", str(tmp_path / "no_model.pt"), "--input", str(fifo)])
    assert report.folders["train"].count == 2 and report.ok
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_sample_input_that_is_a_fifo_is_named(tmp_path: Path) -> None:
    from ganzoo.inference import list_inputs

    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    with time_limit(10), pytest.raises(DataError, match="not a regular file"):
        list_inputs(fifo)


# -- item 9: decompression bombs and mixed sizes ------------------------------------------------------
def test_a_decompression_bomb_is_a_data_error_in_read_and_check(tmp_path: Path) -> None:
    pairs(tmp_path / "train", 2)
    bomb = bomb_png(tmp_path / "train" / "zz_bomb.png")
    with pytest.raises(DataError, match=r"refused to read image .*zz_bomb\.png.*decompression bomb"):
        read_image(bomb)
    report = check_dataset(tmp_path)
    assert not report.ok and any("zz_bomb.png" in p for p in report.problems)
    result = invoke(["data", "check", str(tmp_path)])
    assert result.exit_code == 1 and "zz_bomb.png" in result.output and "Traceback" not in result.output
    # `ganzoo sample --input` reads its inputs with read_image too (load_input_images)


def test_a_decompression_bomb_in_the_training_set_stops_train_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    pairs(root / "train", 3)
    pairs(root / "val", 2)
    bomb_png(root / "train" / "001.png")  # replaces a real pair
    raw = tiny_recipe("pix2pix", root)
    raw["data"].pop("shapes")
    raw["model"]["networks"]["G"]["input_nc"] = 3
    raw["model"]["networks"]["D"]["input_nc"] = 6
    recipe = write_recipe(raw, tmp_path / "r.yaml")
    result = invoke(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress", "--set",
                     "train.max_steps=2"])
    assert result.exit_code == 2, result.output
    assert "001.png" in result.output and "decompression bomb" in result.output and "Traceback" not in result.output


def test_mixed_image_sizes_under_preprocess_none_name_the_files(tmp_path: Path) -> None:
    """Trainer's sample grid used to torch.stack the first val images: "stack expects each tensor ..."."""
    root = tmp_path / "data"
    pairs(root / "train", 2, (64, 32))
    pairs(root / "val", 1, (64, 32))
    pairs(root / "val", 1, (128, 64), start=1)
    raw = tiny_recipe("pix2pix", root)
    raw["data"].pop("shapes")
    raw["data"].update(preprocess="none", flip=False)
    raw["model"]["networks"]["G"]["input_nc"] = 3
    raw["model"]["networks"]["D"]["input_nc"] = 6
    recipe = write_recipe(raw, tmp_path / "r.yaml")
    result = invoke(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "stack expects" not in result.output and "001.png" in result.output and "000.png" in result.output


# -- item 14: a shapes data.root on a read-only file system --------------------------------------------
def test_shapes_on_a_read_only_file_system_is_one_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def read_only(*args: Any, **kwargs: Any) -> str:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # what mkdtemp raises under a read-only mount
    with pytest.raises(DataError, match=r"cannot write the shapes dataset to .*ro/shapes: Read-only file system"):
        ensure_shapes(tmp_path / "ro" / "shapes", size=32, n_train=2, n_val=0, n_test=0)
    result = invoke(["data", "shapes", str(tmp_path / "ro" / "shapes"), "--size", "32", "--n-train", "2"])
    assert result.exit_code == 2 and "Read-only file system" in result.output and "Traceback" not in result.output
    raw = tiny_recipe("pix2pix", tmp_path / "ro" / "shapes")
    result = invoke(["train", str(write_recipe(raw, tmp_path / "r.yaml")), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Read-only file system" in result.output and "Traceback" not in result.output


def test_shapes_on_a_full_disk_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.data import shapes

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shapes, "_write_folder", full)
    with pytest.raises(DataError, match="No space left on device"):
        ensure_shapes(tmp_path / "s", size=32, n_train=2, n_val=0, n_test=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- item 15: archives that unpack to much more than they weigh -----------------------------------------
def zip_bomb(path: Path, member_bytes: int, members: int = 1) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            zf.writestr(f"facades/train/{i:05d}.png", b"\0" * member_bytes)
    return path


def test_an_archive_unpacking_far_beyond_its_size_is_refused_before_writing(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = zip_bomb(tmp_path / "bomb.zip", 8 << 20)  # 8 MiB of zeros in an 8 KiB archive
    assert bomb.stat().st_size < 64 << 10
    monkeypatch.setattr(download_module, "MIN_UNPACKED_CAP", 1 << 20)  # the 1 GiB floor, scaled to the test
    with pytest.raises(DataError, match=r"refused to extract .*bomb\.zip: it unpacks to .* more than the limit"):
        download_module.safe_extract(bomb, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    download_module.safe_extract(bomb, tmp_path / "ok", max_bytes=16 << 20)  # the flag raises the cap
    assert (tmp_path / "ok" / "facades" / "train" / "00000.png").stat().st_size == 8 << 20


def test_too_many_members_are_refused_and_tar_is_capped_too(tmp_path: Path) -> None:
    import tarfile

    many = zip_bomb(tmp_path / "many.zip", 1, members=30)
    with pytest.raises(DataError, match="30 members, more than the limit of 10"):
        download_module.safe_extract(many, tmp_path / "out", max_members=10)
    tar_path = tmp_path / "bomb.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        data = b"\0" * (4 << 20)
        info = tarfile.TarInfo("facades/train/0.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="more than the limit"):
        download_module.safe_extract(tar_path, tmp_path / "tar_out", max_bytes=1 << 20)


def test_download_command_has_the_flag_to_raise_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganzoo.data.download import sha256_of

    bomb = zip_bomb(tmp_path / "facades.zip", 3 << 20)
    for split in ("val", "test"):
        with zipfile.ZipFile(bomb, "a") as zf:
            zf.writestr(f"facades/{split}/0.png", b"x")
    monkeypatch.setattr(download_module, "MIN_UNPACKED_CAP", 1 << 20)
    args = ["data", "download", "facades", "--root", str(tmp_path / "datasets"), "--archive", str(bomb),
            "--sha256", sha256_of(bomb)]
    refused = invoke(args)
    assert refused.exit_code == 2 and "--max-unpacked-gb" in refused.output, refused.output
    allowed = invoke([*args, "--max-unpacked-gb", "0.01"])
    assert allowed.exit_code == 0, allowed.output


def test_a_fifo_base_file_is_a_recipe_error_not_a_hang(tmp_path: Path) -> None:
    from ganzoo.errors import RecipeError
    from ganzoo.recipe import load_recipe

    os.mkfifo(tmp_path / "base.yaml")
    (tmp_path / "recipe.yaml").write_text("base: base.yaml\nmodel: {type: pix2pix}\n")
    with pytest.raises(RecipeError, match="FIFO"):
        load_recipe(tmp_path / "recipe.yaml")
