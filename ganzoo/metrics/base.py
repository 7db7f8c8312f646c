"""What every metric sees: one :class:`EvalContext` per evaluation, computed once and shared.

A metric is a class registered in the ``metric`` registry. It is built with its options
(``build("metric", "fid", feature=my_net)``) and called with the context; it returns a
:class:`MetricResult` (numbers plus the protocol details that make them reproducible)::

    @register("metric", "mean_brightness")
    class MeanBrightness(Metric):
        \"\"\"Mean pixel value of the samples.\"\"\"

        def compute(self, ctx):
            return MetricResult({"value": ctx.samples().float().mean().item() / 255})

The context generates the expensive things lazily and caches them: the inputs and targets of the
split, ``num_z`` samples per input from seeded random codes, and the shapes-world records. Samples
are kept as uint8, exactly what a saved PNG holds, so every metric scores the images a user would see.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import GanzooError
from ganzoo.inference import from_uint8, generate, model_nz, to_uint8


@dataclass
class MetricResult:
    """Scores (``values``, plain floats) and how they were measured (``info``: networks, N, versions)."""

    values: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: float(v) for k, v in self.values.items()}, **({"info": self.info} if self.info else {})}


class MetricUnavailable(GanzooError):
    """A metric that cannot run here: its weights are missing or a package is not installed."""

    exit_code = 2


def find_weight_file(what: str, filename: str, *, path: str | os.PathLike[str] | None, env: str, url: str,
                     option: str) -> Path:
    """A local weight file: ``path`` or ``$env`` if given, else the torch hub cache; never downloaded.

    Raises MetricUnavailable naming the file, the URL to fetch it from and where to put it.
    """
    explicit = path or os.environ.get(env)
    if explicit:
        found = Path(explicit).expanduser()
        if not found.is_file():
            raise MetricUnavailable(f"{what} weights {found} do not exist")
        return found
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    raise MetricUnavailable(
        f"{what} needs the weights {filename}, which are not in {cached.parent}; "
        "ganzoo never downloads weights on its own",
        hint=f"download {url} to {cached} (or pass its path with {option} / {env}=PATH)")


class Metric:
    """Base of the registered metrics: ``skip_reason`` says when a metric does not apply, ``compute`` scores."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        """Why this metric does not apply to ``ctx`` (its model or data), or None when it does."""
        return None

    def compute(self, ctx: EvalContext) -> MetricResult:
        raise NotImplementedError

    def __call__(self, ctx: EvalContext) -> MetricResult:
        return self.compute(ctx)


class EvalContext:
    """A model, one data split and the protocol (inputs, codes per input, seed); caches what metrics share.

    Args:
        model: a loaded model (:func:`ganzoo.load`), in eval mode.
        dataset: the split's dataset (items with ``A`` and, unless it is a ``single`` folder, ``B``).
        num_inputs: score the first N items (sorted by file name).
        num_z: random codes per input for multimodal models (one output otherwise).
        seed: seeds the codes, so two evaluations of one checkpoint see the same samples.
        batch_size: inputs per generator call.
        direction: for CycleGAN, which generator is evaluated (``AtoB`` uses G_A).
    """

    def __init__(self, model: nn.Module, dataset: Any, *, num_inputs: int = 100, num_z: int = 20, seed: int = 0,
                 batch_size: int = 16, direction: str = "AtoB", split: str = "val") -> None:
        if len(dataset) == 0:
            raise GanzooError(f"the {split} split has no items to evaluate")
        self.model = model
        self.dataset = dataset
        self.split = split
        self.num_inputs = min(int(num_inputs), len(dataset))
        self.nz = model_nz(model)
        self.num_z = int(num_z) if self.nz > 0 else 1
        self.seed = int(seed)
        self.batch_size = max(1, int(batch_size))
        self.direction = direction
        self.device = next(iter(model.parameters())).device
        self._items: list[dict[str, Any]] | None = None
        self._samples: torch.Tensor | None = None
        self._latents: torch.Tensor | None = None
        self._records: list[dict[str, Any]] | None | bool = False

    # -- the data --------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        recipe = getattr(self.model, "recipe", None)
        return recipe.model.type if recipe is not None else type(self.model).__name__.lower()

    def items(self) -> list[dict[str, Any]]:
        if self._items is None:
            self._items = [self.dataset[i] for i in range(self.num_inputs)]
        return self._items

    def inputs(self) -> torch.Tensor:
        """The inputs A, (N, C, H, W) in [-1, 1]."""
        return torch.stack([item["A"] for item in self.items()])

    def has_targets(self) -> bool:
        return "B" in self.items()[0]

    def targets(self) -> torch.Tensor:
        """The targets B, (N, C, H, W) in [-1, 1] (paired datasets: B of the same item)."""
        if not self.has_targets():
            raise GanzooError(f"the {self.split} data has no targets B (a 'single' folder?)")
        return torch.stack([item["B"] for item in self.items()])

    def batches(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return list(tensor.split(self.batch_size))

    # -- the samples -----------------------------------------------------------------------------
    def latents(self) -> torch.Tensor | None:
        """The codes of the samples: (N, K, nz), independent per input, drawn from ``seed``; None without z."""
        if self.nz == 0:
            return None
        if self._latents is None:
            generator = torch.Generator().manual_seed(self.seed)
            self._latents = torch.randn(self.num_inputs, self.num_z, self.nz, generator=generator)
        return self._latents

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """Outputs for every input and code: uint8 (N, K, C, H, W)."""
        if self._samples is None:
            A = self.inputs()
            z = self.latents()
            out = []
            if z is None:
                for chunk in self.batches(A):
                    out.append(to_uint8(generate(self.model, chunk.to(self.device), direction=self.direction)).cpu())
            else:
                # Each input gets its own codes: one generator call per input, its K codes as the batch.
                for i in range(A.shape[0]):
                    y = generate(self.model, A[i:i + 1].to(self.device), z[i].to(self.device))
                    out.append(to_uint8(y).cpu())
            self._samples = torch.cat(out, 0)
        return self._samples

    def float_samples(self) -> torch.Tensor:
        """:meth:`samples` in [-1, 1]."""
        return from_uint8(self.samples())

    # -- the shapes world ------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]] | None:
        """The shapes-world record of every input (from the split's meta.jsonl), or None for other data."""
        if self._records is False:
            self._records = self._find_records()
        return self._records  # type: ignore[return-value]

    def _find_records(self) -> list[dict[str, Any]] | None:
        from ganzoo.data.shapes import META_FILE, load_meta

        by_folder: dict[Path, dict[str, dict[str, Any]]] = {}
        found = []
        for item in self.items():
            path = Path(item["A_path"])
            folder = path.parent
            if folder not in by_folder:
                if not (folder / META_FILE).is_file():
                    return None
                by_folder[folder] = {r["file"]: r for r in load_meta(folder.parent, folder.name)}
            record = by_folder[folder].get(path.name)
            if record is None:
                return None
            found.append(record)
        return found

    def shapes_flavour(self) -> str | None:
        """``shapes-multimodal`` / ``shapes-deterministic`` / ``shapes-unpaired`` when the data is the shapes world."""
        import json

        if self.records() is None:
            return None
        folder = Path(self.items()[0]["A_path"]).parent
        info = folder.parent / "shapes.json"
        try:
            return str(json.loads(info.read_text(encoding="utf-8"))["flavour"])
        except (OSError, ValueError, KeyError):
            return None

    def protocol(self) -> dict[str, Any]:
        """How the samples were made, for the result file."""
        return {"split": self.split, "num_inputs": self.num_inputs, "num_z": self.num_z, "seed": self.seed,
                "direction": self.direction}


__all__ = ["EvalContext", "Metric", "MetricResult", "MetricUnavailable"]
