"""data.augment: random resized crop, rotation and colour jitter, seeded by (seed, epoch, index): an aligned
pair gets identical geometry, an item is a function of its seed, nothing changes without it, and a resumed
run is bit-identical with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fault_injection import SHAPES_PAIRED, tiny_recipe
from ganzoo.data.aligned import AlignedDataset
from ganzoo.data.from_recipe import make_dataset
from ganzoo.data.shapes import ensure_shapes
from ganzoo.data.single import SingleDataset
from ganzoo.data.transforms import Augment, item_generator
from ganzoo.data.unaligned import UnalignedDataset
from ganzoo.errors import DataError, RecipeError
from ganzoo.recipe import resolve_recipe
from ganzoo.training.checkpoint import load_checkpoint
from ganzoo.training.trainer import Trainer, TrainingInterrupted
from helpers import assert_identical

GEOMETRY = {"scale": [0.5, 0.9], "rotation": 30.0}
COLOUR = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}


def _noise(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture()
def twins(tmp_path: Path) -> Path:
    """An aligned dataset whose A and B halves are the same picture."""
    folder = tmp_path / "twins" / "train"
    folder.mkdir(parents=True)
    for i in range(4):
        half = _noise(i)
        Image.fromarray(np.concatenate([half, half], axis=1)).save(folder / f"{i}.png")
    return tmp_path / "twins"


def aligned(root: Path, augment: dict[str, Any] | None, **kwargs: Any) -> AlignedDataset:
    options = {"load_size": 32, "crop_size": 32, "preprocess": "resize_and_crop", "flip": True, **kwargs}
    return AlignedDataset(root, augment=augment, **options)


def test_an_aligned_pair_gets_identical_geometry(twins: Path) -> None:
    plain, augmented = aligned(twins, None), aligned(twins, {**GEOMETRY, **COLOUR, "color_on": "both"})
    for i in range(4):
        item = augmented[i]
        assert torch.equal(item["A"], item["B"])  # same crop, rotation and colour factors on both halves
        assert not torch.equal(item["A"], plain[i]["A"])  # and it did transform them


def test_colour_on_one_side_keeps_the_geometry_shared(twins: Path) -> None:
    geometry_only = aligned(twins, GEOMETRY)
    for side, other in (("B", "A"), ("A", "B")):
        dataset = aligned(twins, {**GEOMETRY, **COLOUR, "color_on": side})
        for i in range(4):
            item, reference = dataset[i], geometry_only[i]
            assert torch.equal(item[other], reference[other])  # the other side: geometry alone
            assert not torch.equal(item[side], reference[side])  # this side: colour too


def test_the_same_seed_epoch_and_index_give_the_same_item(twins: Path) -> None:
    spec = {**GEOMETRY, **COLOUR}
    a, b = aligned(twins, spec), aligned(twins, spec)
    a.set_epoch(3), b.set_epoch(3)
    assert all(torch.equal(a[i]["A"], b[i]["A"]) for i in range(4))
    b.set_epoch(4)
    assert not all(torch.equal(a[i]["A"], b[i]["A"]) for i in range(4))
    other_seed = aligned(twins, spec, seed=1)
    other_seed.set_epoch(3)
    assert not all(torch.equal(a[i]["A"], other_seed[i]["A"]) for i in range(4))


@pytest.mark.parametrize("spec", [None, {}, {"brightness": 0.0, "scale": None, "rotation": 0.0, "fill": 9}])
def test_without_augmentation_nothing_is_drawn_or_changed(twins: Path, spec: dict[str, Any] | None) -> None:
    """The stream of an item is what it was before data.augment existed: old runs resume identically."""
    assert Augment(spec).sample(item_generator(0, 0, 0)) is None
    reference, dataset = aligned(twins, None), aligned(twins, spec)
    for epoch in (0, 1):
        reference.set_epoch(epoch), dataset.set_epoch(epoch)
        assert all(torch.equal(reference[i]["A"], dataset[i]["A"]) for i in range(4))


def test_draws_come_after_the_crop_and_flip_and_have_a_fixed_count() -> None:
    augment = Augment({**GEOMETRY, **COLOUR})
    generator = item_generator(5, 2, 7)
    draw = augment.sample(generator)
    assert draw is not None and draw.crop is not None and -30 <= draw.angle <= 30
    assert 0.6 <= draw.brightness <= 1.4 and -0.1 <= draw.hue <= 0.1
    # 4 numbers for the crop, 1 angle, 4 colour factors, whatever their values
    again = item_generator(5, 2, 7)
    for _ in range(9):
        torch.rand((), generator=again, dtype=torch.float64)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=again))


def test_the_crop_box_keeps_its_share_of_the_area() -> None:
    augment = Augment({"scale": [0.25, 0.25], "ratio": [1.0, 1.0]})
    draw = augment.sample(item_generator(0, 0, 0))
    top, left, height, width = augment.crop_box(draw, 64, 64)
    assert (height, width) == (32, 32) and 0 <= top <= 32 and 0 <= left <= 32


def test_unaligned_images_get_their_own_draws(tmp_path: Path) -> None:
    for domain in ("trainA", "trainB"):
        (tmp_path / domain).mkdir()
        for i in range(2):
            Image.fromarray(_noise(i)).save(tmp_path / domain / f"{i}.png")
    common = {"load_size": 32, "crop_size": 32, "flip": False, "serial_batches": True}
    plain = UnalignedDataset(tmp_path, **common)
    augmented = UnalignedDataset(tmp_path, augment=GEOMETRY, **common)
    item, reference = augmented[0], plain[0]
    assert torch.equal(reference["A"], reference["B"])  # the same picture in both folders
    assert not torch.equal(item["A"], item["B"])  # two draws


def test_single_images_are_augmented_too(twins: Path) -> None:
    plain = SingleDataset(twins, "train", load_size=32, crop_size=32, flip=False)
    augmented = SingleDataset(twins, "train", load_size=32, crop_size=32, flip=False, augment=COLOUR)
    assert not torch.equal(plain[0]["A"], augmented[0]["A"])


def test_grayscale_images_take_brightness_and_skip_hue(twins: Path) -> None:
    dataset = aligned(twins, {**COLOUR, "color_on": "A"}, input_nc=1)
    assert dataset[0]["A"].shape == (1, 32, 32) and torch.isfinite(dataset[0]["A"]).all()


# -- recipes ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("augment")
    ensure_shapes(root / "paired", **SHAPES_PAIRED)
    return root / "paired"


def augmented_recipe(data: Path, **augment: Any) -> dict[str, Any]:
    recipe = tiny_recipe("pix2pix", data, max_steps=4)
    recipe["data"]["augment"] = {**GEOMETRY, **COLOUR, **augment}
    return recipe


def test_the_recipe_section_and_its_defaults(data: Path) -> None:
    recipe = resolve_recipe(augmented_recipe(data))
    assert recipe.data.augment.rotation == 30.0 and recipe.data.augment.color_on == "both"
    assert list(recipe.data.augment.ratio) == pytest.approx([0.75, 4 / 3])
    assert resolve_recipe(tiny_recipe("pix2pix", data)).data.augment is None


@pytest.mark.parametrize("augment, message", [
    ({"scale": [0.9, 0.5]}, r"data\.augment\.scale: \[0\.9, 0\.5\]: low is above high"),
    ({"scale": [0.0, 0.5]}, r"data\.augment\.scale\[0\]: must be > 0"),
    ({"hue": 0.7}, r"data\.augment\.hue: must be <= 0\.5"),
    ({"color_on": "target"}, r"data\.augment\.color_on: 'target' is not one of: both, A, B"),
    ({"rotate": 10}, r"data\.augment\.rotate: unknown key"),
])
def test_bad_values_name_their_key(data: Path, augment: dict[str, Any], message: str) -> None:
    recipe = tiny_recipe("pix2pix", data)
    recipe["data"]["augment"] = augment
    with pytest.raises(RecipeError, match=message):
        resolve_recipe(recipe)


def test_cache_of_augmented_items_is_refused_at_resolve(data: Path) -> None:
    recipe = augmented_recipe(data)
    recipe["data"].update(cache=True, flip=False, preprocess="none")
    with pytest.raises(RecipeError, match=r"data\.cache: is true, but items change at every load: data\.augment"):
        resolve_recipe(recipe)


def test_validation_items_are_never_augmented(data: Path) -> None:
    recipe = resolve_recipe(augmented_recipe(data))
    plain = resolve_recipe(tiny_recipe("pix2pix", data))
    val, reference = make_dataset(recipe, "val"), make_dataset(plain, "val")
    assert all(torch.equal(val[i]["B"], reference[i]["B"]) for i in range(len(val)))
    train = make_dataset(recipe, "train")
    assert not torch.equal(train[0]["B"], make_dataset(plain, "train")[0]["B"])


def test_a_dataset_without_the_argument_is_an_error(data: Path, temp_register: Any) -> None:
    class Plain(torch.utils.data.Dataset):
        def __init__(self, root: str, split: str = "train", seed: int = 0) -> None:
            self.root = root

        def __len__(self) -> int:
            return 1

    temp_register("dataset", "no_augment", Plain)
    recipe = augmented_recipe(data)
    recipe["data"].update(dataset="no_augment")
    recipe["data"].pop("shapes")
    with pytest.raises(DataError, match="data.augment: the dataset 'no_augment' takes no 'augment' argument"):
        make_dataset(resolve_recipe(recipe), "train")


def test_a_resumed_run_sees_the_same_augmented_data(data: Path, tmp_path: Path) -> None:
    straight = Trainer(resolve_recipe(augmented_recipe(data)), tmp_path / "straight", show_progress=False)
    straight.run()
    interrupted = Trainer(resolve_recipe(augmented_recipe(data)), tmp_path / "resumed", show_progress=False)
    inner = interrupted.parts.step

    def stop(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = inner(batch)
        if interrupted.step == 1:
            interrupted.request_stop()
        return losses

    interrupted.parts.step = stop  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted):
        interrupted.run()
    Trainer(resolve_recipe(augmented_recipe(data)), tmp_path / "resumed", resume=True, show_progress=False).run()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    for part in ("networks", "optimizers"):
        assert_identical(a[part], b[part], part)
