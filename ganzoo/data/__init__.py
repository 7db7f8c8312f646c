"""Data: the shapes world and the ``aligned``, ``unaligned`` and ``single`` datasets.

Importing this package registers the datasets in the ``dataset`` registry::

    ds = ganzoo.build("dataset", "aligned", root="data/shapes", crop_size=64, load_size=64)
    item = ds[0]   # {"A": Tensor[3, 64, 64], "B": ..., "A_path": str, "B_path": str}
"""
from ganzoo.data.aligned import AlignedDataset
from ganzoo.data.shapes import (
    COOL_PALETTE,
    FLAVOURS,
    PALETTE,
    SHAPE_TYPES,
    WARM_PALETTE,
    ensure_shapes,
    generate_shapes,
    interior_colours,
    load_meta,
)
from ganzoo.data.single import SingleDataset
from ganzoo.data.transforms import PREPROCESS_MODES, Preprocess
from ganzoo.data.unaligned import UnalignedDataset

__all__ = [
    "COOL_PALETTE",
    "FLAVOURS",
    "PALETTE",
    "PREPROCESS_MODES",
    "SHAPE_TYPES",
    "WARM_PALETTE",
    "AlignedDataset",
    "Preprocess",
    "SingleDataset",
    "UnalignedDataset",
    "ensure_shapes",
    "generate_shapes",
    "interior_colours",
    "load_meta",
]
