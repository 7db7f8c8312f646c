"""A recipe's ``data`` section turned into its dataset, for training, evaluation and sampling alike."""
from __future__ import annotations

from typing import Any

from ganzoo.data.transforms import Augment
from ganzoo.errors import DataError
from ganzoo.recipe.schema import Recipe
from ganzoo.registry import build, get_component


def dataset_kwargs(recipe: Recipe, split: str) -> dict[str, Any]:
    """The dataset constructor arguments a recipe's ``data`` section gives for ``split``."""
    data = recipe.data.to_dict()
    entry = get_component("dataset", data["dataset"])
    accepted = set(entry.signature().parameters)
    if data["cache"] and "cache" not in accepted:
        raise DataError(f"data.cache: the dataset {data['dataset']!r} takes no 'cache' argument, so it cannot "
                        "keep items in memory", hint="set data.cache=false")
    if "augment" not in accepted and Augment(data.get("augment")).active:
        raise DataError(f"data.augment: the dataset {data['dataset']!r} takes no 'augment' argument, so it cannot "
                        "augment its items", hint="remove data.augment, or add the argument to the dataset")
    kwargs = {k: v for k, v in data.items() if k in accepted}
    kwargs.update(split=split, seed=recipe.train.seed)
    if split != "train":
        kwargs["flip"] = False
        if "augment" in kwargs:
            kwargs["augment"] = None  # evaluation and samples see the images as they are
    return kwargs


def make_dataset(recipe: Recipe, split: str = "train", **extra: Any) -> Any:
    """Build the recipe's dataset for ``split``, generating the shapes world first when asked to;
    ``extra`` are further dataset arguments (``serial_batches`` for evaluation)."""
    shapes = recipe.data.shapes
    if shapes is not None:
        from ganzoo.data.shapes import ensure_shapes

        ensure_shapes(recipe.data.root, **shapes.to_dict())
    return build("dataset", recipe.data.dataset, **dataset_kwargs(recipe, split), **extra)


def epoch_reaches_persistent_workers(dataset: Any) -> bool:
    """Whether DataLoader workers kept across epochs would still see ``set_epoch``.

    A dataset says so with ``epoch_reaches_persistent_workers = True`` (the built-in ones keep the
    epoch in shared memory); one without ``set_epoch`` has nothing to miss. Any other dataset gets
    fresh workers every epoch, which copy it with its new epoch.
    """
    return bool(getattr(dataset, "epoch_reaches_persistent_workers", not hasattr(dataset, "set_epoch")))
