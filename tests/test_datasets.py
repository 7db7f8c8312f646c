"""The aligned, unaligned and single datasets: layouts, preprocess modes, seeded randomness, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ganzoo.data import AlignedDataset, SingleDataset, UnalignedDataset, generate_shapes
from ganzoo.data.images import read_image
from ganzoo.data.transforms import PREPROCESS_MODES, Preprocess, item_generator, to_tensor
from ganzoo.errors import DataError
from ganzoo.registry import registry

NO_AUGMENT = {"preprocess": "none", "flip": False}


def noise(height: int, width: int, seed: int, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_pair(path: Path, left: np.ndarray, right: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)
    return path


@pytest.fixture()
def pairs(tmp_path: Path) -> Path:
    """ROOT/train with 4 A|B pairs of 40x30 noise halves (left and right differ)."""
    root = tmp_path / "pairs"
    for i in range(4):
        write_pair(root / "train" / f"{i}.png", noise(30, 40, 2 * i), noise(30, 40, 2 * i + 1))
    return root


@pytest.fixture()
def twins(tmp_path: Path) -> Path:
    """ROOT/train with 3 A|B pairs whose halves are identical noise: any A/B mismatch is a bug."""
    root = tmp_path / "twins"
    for i in range(3):
        half = noise(30, 40, 100 + i)
        write_pair(root / "train" / f"{i}.png", half, half)
    return root


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("s") / "shapes-multimodal", size=32, n_train=6, n_val=0, n_test=2)


@pytest.fixture(scope="module")
def unpaired_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("u") / "shapes-unpaired", flavour="shapes-unpaired", size=32,
                           n_train=5, n_val=0, n_test=1)


def test_datasets_are_registered_under_their_names() -> None:
    names = registry("dataset").names()
    assert {"aligned", "unaligned", "single"} <= set(names)
    assert registry("dataset").get("aligned").factory is AlignedDataset
    assert registry("dataset").get("aligned").defaults()["load_size"] == 286


def test_aligned_item_contract_on_the_shapes_world(shapes_root: Path) -> None:
    dataset = registry("dataset").build("aligned", root=shapes_root, **NO_AUGMENT)
    assert len(dataset) == 6
    item = dataset[2]
    assert set(item) == {"A", "B", "A_path", "B_path"}
    assert item["A"].shape == item["B"].shape == (3, 32, 32) and item["A"].dtype == torch.float32
    assert item["A_path"] == item["B_path"] == str(shapes_root / "train" / "00002.png")
    pair = np.asarray(Image.open(item["A_path"]).convert("RGB")).astype(np.float32) / 127.5 - 1
    assert torch.allclose(item["A"], torch.from_numpy(pair[:, :32].copy()).permute(2, 0, 1))
    assert torch.allclose(item["B"], torch.from_numpy(pair[:, 32:].copy()).permute(2, 0, 1))


@pytest.mark.parametrize(("mode", "height", "width"), [
    ("resize_and_crop", 24, 24),
    ("crop", 24, 24),
    ("scale_width", 27, 36),  # width -> load_size, height 36 * 30 / 40
    ("scale_width_and_crop", 24, 24),
    ("none", 32, 40),  # 30 rounds to a multiple of 4 (32), 40 already is one
])
def test_every_preprocess_mode_gives_the_official_size(pairs: Path, mode: str, height: int, width: int) -> None:
    dataset = AlignedDataset(pairs, preprocess=mode, load_size=36, crop_size=24)
    for index in range(len(dataset)):
        item = dataset[index]
        for key in ("A", "B"):
            assert item[key].shape == (3, height, width)
            assert item[key].min() >= -1 and item[key].max() <= 1 and item[key].min() < 0 < item[key].max()


def test_scale_width_keeps_at_least_crop_size_rows(tmp_path: Path) -> None:
    write_pair(tmp_path / "wide" / "train" / "0.png", noise(10, 80, 0), noise(10, 80, 1))
    item = AlignedDataset(tmp_path / "wide", preprocess="scale_width", load_size=40, crop_size=24)[0]
    assert item["A"].shape == (3, 24, 40)


def test_resize_and_crop_matches_a_hand_made_pil_pipeline(pairs: Path) -> None:
    dataset = AlignedDataset(pairs, load_size=36, crop_size=24, flip=False, seed=5)
    dataset.set_epoch(3)
    left = Image.open(pairs / "train" / "1.png").crop((0, 0, 40, 30))
    augmentation = Preprocess("resize_and_crop", 36, 24).sample(40, 30, item_generator(5, 3, 1))
    x, y = augmentation.crop_x, augmentation.crop_y
    expected = left.resize((36, 36), Image.BICUBIC).crop((x, y, x + 24, y + 24))
    assert torch.equal(dataset[1]["A"], to_tensor(expected, 3))


def test_aligned_crop_and_flip_are_identical_for_a_and_b(twins: Path) -> None:
    for mode in PREPROCESS_MODES:
        dataset = AlignedDataset(twins, preprocess=mode, load_size=36, crop_size=24)
        flips = set()
        for epoch in range(6):
            dataset.set_epoch(epoch)
            for index in range(len(dataset)):
                item = dataset[index]
                assert torch.equal(item["A"], item["B"]), (mode, epoch, index)
                flips.add(Preprocess(mode, 36, 24).sample(40, 30, item_generator(0, epoch, index)).flip)
        assert flips == {True, False}


def test_flip_really_mirrors(twins: Path) -> None:
    plain = AlignedDataset(twins, preprocess="none", flip=False)
    flipping = AlignedDataset(twins, preprocess="none", flip=True)
    seen = set()
    for epoch in range(8):
        flipping.set_epoch(epoch)
        got, ref = flipping[0]["A"], plain[0]["A"]
        seen.add("flipped" if torch.equal(got, ref.flip(-1)) else "same" if torch.equal(got, ref) else "other")
    assert seen == {"flipped", "same"}


def test_btoa_swaps_input_and_target(pairs: Path) -> None:
    forward = AlignedDataset(pairs, load_size=36, crop_size=24, seed=1)
    backward = AlignedDataset(pairs, load_size=36, crop_size=24, seed=1, direction="BtoA")
    for index in range(len(forward)):
        a, b = forward[index], backward[index]
        assert torch.equal(a["A"], b["B"]) and torch.equal(a["B"], b["A"])
        assert not torch.equal(a["A"], a["B"])


def test_one_channel_input_and_output(tmp_path: Path) -> None:
    path = write_pair(tmp_path / "rgb" / "train" / "0.png", noise(32, 40, 0), noise(32, 40, 1))
    item = AlignedDataset(tmp_path / "rgb", input_nc=1, output_nc=3, **NO_AUGMENT)[0]
    assert item["A"].shape == (1, 32, 40) and item["B"].shape == (3, 32, 40)
    left = Image.open(path).crop((0, 0, 40, 32)).convert("L")  # ITU-R 601 luma, as the official Grayscale
    assert torch.allclose(item["A"][0], torch.from_numpy(np.asarray(left, dtype=np.float32)) / 255 * 2 - 1, atol=1e-6)
    backward = AlignedDataset(tmp_path / "rgb", input_nc=3, output_nc=1, direction="BtoA", **NO_AUGMENT)[0]
    assert backward["A"].shape == (3, 32, 40) and backward["B"].shape == (1, 32, 40)
    assert torch.equal(backward["B"], item["A"])
    # A grayscale file read with 3 channels repeats its one channel.
    write_pair(tmp_path / "grey" / "train" / "0.png", noise(8, 8, 0, channels=1), noise(8, 8, 1, channels=1))
    grey = AlignedDataset(tmp_path / "grey", **NO_AUGMENT)[0]["A"]
    assert grey.shape == (3, 8, 8) and torch.equal(grey[0], grey[2])


def test_randomness_depends_only_on_seed_epoch_and_index(pairs: Path) -> None:
    def items(dataset: AlignedDataset) -> list[torch.Tensor]:
        return [dataset[i]["A"] for i in range(len(dataset))]

    first = AlignedDataset(pairs, load_size=36, crop_size=24, seed=4)
    second = AlignedDataset(pairs, load_size=36, crop_size=24, seed=4)
    torch.manual_seed(123)  # global state must not matter
    epoch0 = items(first)
    torch.manual_seed(999)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, items(second)))
    first.set_epoch(1)
    epoch1 = items(first)
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    second.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, items(second)))
    other_seed = AlignedDataset(pairs, load_size=36, crop_size=24, seed=5)
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, items(other_seed)))
    # Reversed access order gives the same items (nothing is consumed from a shared stream).
    assert all(torch.equal(a, first[i]["A"]) for i, a in reversed(list(enumerate(epoch1))))


def test_dataloader_workers_do_not_change_the_data(pairs: Path) -> None:
    dataset = AlignedDataset(pairs, load_size=36, crop_size=24, seed=2)
    dataset.set_epoch(7)
    serial = [b["A"] for b in DataLoader(dataset, batch_size=2, num_workers=0)]
    parallel = [b["A"] for b in DataLoader(dataset, batch_size=2, num_workers=2)]
    assert len(serial) == 2 and all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_unaligned_pairs_each_a_with_a_seeded_random_b(unpaired_root: Path, tmp_path: Path) -> None:
    dataset = registry("dataset").build("unaligned", root=unpaired_root, **NO_AUGMENT)
    assert len(dataset) == 5
    item = dataset[3]
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    assert item["A_path"] == str(unpaired_root / "trainA" / "00003.png")
    assert Path(item["B_path"]).parent.name == "trainB"
    chosen = set()
    for epoch in range(10):
        dataset.set_epoch(epoch)
        chosen.add(dataset[0]["B_path"])
    assert len(chosen) > 1
    again = UnalignedDataset(unpaired_root, **NO_AUGMENT)
    again.set_epoch(9)
    assert again[0]["B_path"] == dataset[0]["B_path"]
    serial = UnalignedDataset(unpaired_root, serial_batches=True, **NO_AUGMENT)
    assert [Path(serial[i]["B_path"]).name for i in range(5)] == [f"{i:05d}.png" for i in range(5)]


def test_unaligned_length_is_the_larger_folder_and_btoa_swaps_folders(tmp_path: Path) -> None:
    root = tmp_path / "u"
    for domain, count in (("A", 5), ("B", 3)):
        (root / f"train{domain}").mkdir(parents=True)
        for i in range(count):
            Image.fromarray(noise(16, 16, i)).save(root / f"train{domain}" / f"{i}.png")
    forward = UnalignedDataset(root, input_nc=1, **NO_AUGMENT)
    assert len(forward) == 5 and forward[4]["A"].shape == (1, 16, 16)
    backward = UnalignedDataset(root, direction="BtoA", **NO_AUGMENT)
    assert len(backward) == 5
    assert [Path(backward[i]["A_path"]).parent.name for i in range(5)] == ["trainB"] * 5
    assert backward[4]["A_path"] == str(root / "trainB" / "1.png")  # 4 % 3
    assert Path(backward[0]["B_path"]).parent.name == "trainA"
    assert len(UnalignedDataset(root, max_items=2, **NO_AUGMENT)) == 2


def test_single_reads_one_folder_without_targets(shapes_root: Path) -> None:
    dataset = registry("dataset").build("single", root=shapes_root / "test", **NO_AUGMENT)
    assert len(dataset) == 2
    item = dataset[1]
    assert set(item) == {"A", "A_path"} and item["A"].shape == (3, 32, 64)
    assert len(SingleDataset(shapes_root, split="train", max_items=4, **NO_AUGMENT)) == 4
    grey = SingleDataset(shapes_root, split="test", input_nc=1, preprocess="crop", crop_size=16)[0]["A"]
    assert grey.shape == (1, 16, 16)


def test_max_items_keeps_the_first_sorted_files(shapes_root: Path) -> None:
    dataset = AlignedDataset(shapes_root, max_items=3, **NO_AUGMENT)
    assert [Path(p).name for p in dataset.paths] == ["00000.png", "00001.png", "00002.png"]


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "hint"), [
    ("facades", "ganzoo data download facades"),
    ("shapes-unpaired", "ganzoo data shapes"),
    ("my_photos", "data.root"),
])
def test_missing_root_says_how_to_get_it(tmp_path: Path, name: str, hint: str) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        AlignedDataset(tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and hint in str(info.value)


def test_missing_split_folder_lists_what_is_there(pairs: Path) -> None:
    with pytest.raises(DataError, match=r"has no 'trian' folder .* contains: train") as info:
        AlignedDataset(pairs, split="trian")
    assert "did you mean 'train'" in str(info.value)
    with pytest.raises(DataError, match=r"no 'trainA' folder"):
        UnalignedDataset(pairs)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"no images found in .*train"):
        AlignedDataset(tmp_path / "d")


def test_truncated_and_fake_images_name_the_file(pairs: Path) -> None:
    victim = pairs / "train" / "2.png"
    victim.write_bytes(victim.read_bytes()[:300])
    fake = pairs / "train" / "3.png"
    fake.write_text("this is not a png")
    dataset = AlignedDataset(pairs, **NO_AUGMENT)
    assert dataset[0]["A"].shape == (3, 32, 40)
    for index, path in ((2, victim), (3, fake)):
        with pytest.raises(DataError, match="cannot read image") as info:
            dataset[index]
        assert str(path) in str(info.value)


def test_odd_width_pair_is_rejected(tmp_path: Path) -> None:
    Image.fromarray(noise(16, 33, 0)).save((tmp_path / "odd.png"))
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "odd.png").rename(tmp_path / "d" / "train" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png is 33x16: an aligned image needs an even width"):
        AlignedDataset(tmp_path / "d")[0]


def test_bad_sizes_and_options(pairs: Path) -> None:
    with pytest.raises(DataError, match=r"load_size \(200\) is smaller than data.crop_size \(256\)"):
        AlignedDataset(pairs, load_size=200, crop_size=256)
    with pytest.raises(DataError, match="unknown mode 'resize_crop'") as info:
        AlignedDataset(pairs, preprocess="resize_crop")
    assert "resize_and_crop" in str(info.value)
    with pytest.raises(DataError, match=r"smaller than data.crop_size 64"):
        AlignedDataset(pairs, preprocess="crop", crop_size=64)[0]
    with pytest.raises(DataError, match="input_nc"):
        AlignedDataset(pairs, input_nc=2)
    with pytest.raises(DataError, match="direction"):
        AlignedDataset(pairs, direction="AB")
    with pytest.raises(DataError, match="max_items"):
        AlignedDataset(pairs, max_items=0)


# ---- image modes --------------------------------------------------------------------------------

def test_unusual_image_modes_become_8_bit_l_or_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (200, 10, 10, 255)  # opaque red top, fully transparent black bottom
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.mode == "RGB"
    assert np.asarray(image)[0, 0].tolist() == [200, 10, 10] and np.asarray(image)[3, 3].tolist() == [255, 255, 255]

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    assert np.asarray(read_image(tmp_path / "palette.png"))[0, 1].tolist() == [200, 100, 50]

    deep = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.mode == "L" and np.asarray(image).tolist() == [[0, 128], [255, 4]]

    grey_alpha = Image.new("LA", (2, 2), (50, 0))
    grey_alpha.save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.mode == "L" and np.asarray(image).tolist() == [[255, 255], [255, 255]]


def test_persistent_workers_follow_set_epoch(pairs: Path) -> None:
    """Workers kept between epochs still use each new epoch's crops and flips (shared-memory epoch)."""
    dataset = AlignedDataset(pairs, load_size=36, crop_size=24, seed=2)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        seen.append([b["A"] for b in loader])
    for epoch, batches in enumerate(seen):
        serial = AlignedDataset(pairs, load_size=36, crop_size=24, seed=2)
        serial.set_epoch(epoch)
        expected = [b["A"] for b in DataLoader(serial, batch_size=2, num_workers=0)]
        assert len(batches) == len(expected) and all(torch.equal(a, b) for a, b in zip(batches, expected))
    assert any(not torch.equal(a, b) for a, b in zip(seen[0], seen[1]))


def test_only_datasets_whose_epoch_reaches_kept_workers_get_persistent_workers(pairs: Path) -> None:
    from ganzoo.training.trainer import epoch_reaches_persistent_workers

    class OwnEpoch:  # a plugin dataset that sets its epoch on itself: kept workers would miss it
        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    class Stateless:  # nothing per epoch: nothing to miss
        pass

    assert epoch_reaches_persistent_workers(AlignedDataset(pairs, load_size=36, crop_size=24))
    assert not epoch_reaches_persistent_workers(OwnEpoch())
    assert epoch_reaches_persistent_workers(Stateless())


def test_cache_returns_the_same_items_and_reads_each_file_once(shapes_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = AlignedDataset(shapes_root, **NO_AUGMENT, input_nc=1)
    cached = AlignedDataset(shapes_root, **NO_AUGMENT, input_nc=1, cache=True)
    reads: list[str] = []
    real_load = cached._load
    monkeypatch.setattr(cached, "_load", lambda index: reads.append(index) or real_load(index))
    for epoch in range(3):
        cached.set_epoch(epoch)
        plain.set_epoch(epoch)
        for index in range(len(plain)):
            expected, got = plain[index], cached[index]
            assert torch.equal(expected["A"], got["A"]) and torch.equal(expected["B"], got["B"])
            assert expected["A_path"] == got["A_path"]
    assert sorted(reads) == list(range(len(plain)))
    batches = [b["B"] for b in DataLoader(cached, batch_size=3)]
    assert torch.equal(torch.cat(batches), torch.stack([plain[i]["B"] for i in range(len(plain))]))


@pytest.mark.parametrize("options, reason", [
    ({"flip": True, "preprocess": "none"}, "data.flip is true"),
    ({"flip": False, "preprocess": "resize_and_crop", "load_size": 36, "crop_size": 32}, "a random crop"),
])
def test_cache_refuses_items_that_change_between_epochs(shapes_root: Path, options: dict, reason: str) -> None:
    with pytest.raises(DataError, match=reason) as caught:
        AlignedDataset(shapes_root, cache=True, **options)
    assert "data.cache" in caught.value.message
    AlignedDataset(shapes_root, flip=False, preprocess="resize_and_crop", load_size=32, crop_size=32, cache=True)


def test_cache_on_unpaired_data_needs_fixed_pairs(unpaired_root: Path) -> None:
    with pytest.raises(DataError, match="random B"):
        UnalignedDataset(unpaired_root, cache=True, **NO_AUGMENT)
    fixed = UnalignedDataset(unpaired_root, cache=True, serial_batches=True, **NO_AUGMENT)
    assert fixed[1] is fixed[1]
    single = SingleDataset(unpaired_root, split="trainA", cache=True, **NO_AUGMENT)
    assert torch.equal(single[0]["A"], SingleDataset(unpaired_root, split="trainA", **NO_AUGMENT)[0]["A"])
