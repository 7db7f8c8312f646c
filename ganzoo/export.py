"""Exporting a trained generator for use outside ganzoo (TorchScript or ONNX), with a parity check.

The exported module is the generator alone: ``forward(x)`` or, for a model with a latent code
(BicycleGAN), ``forward(x, z)`` with ``x`` of shape ``(N, input_nc, H, W)`` in [-1, 1] and ``z`` of
shape ``(N, nz)``; the output is ``(N, output_nc, H, W)`` in [-1, 1]. A JSON file beside it
(``<out>.json``) records the input/output contract and the inference policy.

**Inference policy** (made explicit because the official code and "eval mode" disagree):

- ``dropout="eval"``: dropout off, deterministic output (the usual deployment choice).
- ``dropout="train"``: dropout stays on, as in the official pix2pix ``test.py``, which runs the
  networks in train mode (dropout is pix2pix's only noise source, see the paper, Sec. 3.1).
- ``batch_stats="running"``: batch norm uses its running statistics (eval mode).
- ``batch_stats="batch"``: batch norm normalises with the statistics of the batch it is given,
  as the official test code does in train mode; the running buffers are never updated.
- ``batch_stats="auto"`` (default): ``batch`` when ``dropout="train"`` (the official behaviour),
  ``running`` otherwise. Instance norm behaves the same either way.

After exporting, the exported module is run next to the PyTorch generator on the same random
inputs (and, with dropout on, the same random seed) and the largest difference is reported.
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import GanzooError

FORMATS = ("torchscript", "onnx")
DROPOUT_POLICIES = ("eval", "train")
BATCH_STATS_POLICIES = ("auto", "running", "batch")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
PARITY_TOLERANCE = 1e-4


class ExportError(GanzooError):
    """An export that cannot be done: missing optional dependency, unknown format, bad options."""

    exit_code = 2


@dataclass
class ExportResult:
    """What was written and how well it matches the PyTorch generator."""

    path: Path
    metadata_path: Path
    format: str
    network: str
    input_shape: list[int]
    nz: int
    dropout: str
    batch_stats: str
    parity_max_abs_diff: float | None
    parity_note: str

    @property
    def parity_ok(self) -> bool | None:
        return None if self.parity_max_abs_diff is None else self.parity_max_abs_diff <= PARITY_TOLERANCE


class ExportedGenerator(nn.Module):
    """The generator with the inference policy baked in; ``forward(x)`` or ``forward(x, z)``."""

    def __init__(self, generator: nn.Module, uses_z: bool) -> None:
        super().__init__()
        self.generator = generator
        self.uses_z = uses_z

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(x, z) if self.uses_z else self.generator(x)


def _batch_norm_from_batch(module: nn.Module) -> None:
    """Make every batch norm normalise with batch statistics, without touching running buffers."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None


def apply_policy(generator: nn.Module, dropout: str, batch_stats: str) -> tuple[nn.Module, str]:
    """A copy of ``generator`` set up for inference under the policy; returns it and the resolved batch_stats."""
    if dropout not in DROPOUT_POLICIES:
        raise ExportError(f"unknown dropout policy {dropout!r}; choose one of {', '.join(DROPOUT_POLICIES)}")
    if batch_stats not in BATCH_STATS_POLICIES:
        raise ExportError(f"unknown batch-stats policy {batch_stats!r}; choose one of {', '.join(BATCH_STATS_POLICIES)}")
    if batch_stats == "auto":
        batch_stats = "batch" if dropout == "train" else "running"
    net = copy.deepcopy(generator).cpu().float()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if dropout == "train":
        for m in net.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.train()
    if batch_stats == "batch":
        _batch_norm_from_batch(net)
    return net, batch_stats


def pick_generator(model: nn.Module, direction: str = "AtoB") -> str:
    """The name of the generator to export: ``G``, or ``G_A``/``G_B`` for CycleGAN by direction."""
    names = list(model.networks)
    if "G" in names:
        return "G"
    if "G_A" in names and "G_B" in names:
        return "G_A" if direction == "AtoB" else "G_B"
    raise ExportError(f"the model has no generator named G, G_A or G_B (networks: {', '.join(names)})")


def default_input_size(recipe: dict[str, Any]) -> int:
    """The side of the images the networks were trained on (the recipe's network input size)."""
    from ganzoo.recipe.resolve import network_input_size

    size = network_input_size(recipe.data)
    return int(size[1]) if size is not None else recipe.data.crop_size


def _example_inputs(net: nn.Module, batch: int, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, int(net.input_nc), size, size, generator=generator) * 2 - 1
    nz = int(getattr(net, "nz", 0) or 0)
    if nz:
        return x, torch.randn(batch, nz, generator=generator)
    return (x,)


def _run_seeded(fn: Any, inputs: tuple[torch.Tensor, ...], seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            return fn(*inputs)


def _export_torchscript(wrapper: ExportedGenerator, inputs: tuple[torch.Tensor, ...], out: Path,
                        metadata: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        # Input checks inside the networks (shape comparisons) are recorded as constants; they only
        # matter for inputs the networks could not take anyway.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, inputs, check_trace=False)
        # TorchScript is deprecated in favour of torch.export, but it is still what C++ (libtorch),
        # mobile and most serving stacks load; the warning is not actionable for a user here.
        torch.jit.save(traced, str(out), _extra_files={"ganzoo.json": json.dumps(metadata)})
        return torch.jit.load(str(out))


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the optional onnx packages, which are not installed",
                          hint='pip install "ganzoo[onnx]"  (installs onnx, onnxscript and onnxruntime)') from None
    return onnx


def _export_onnx(wrapper: ExportedGenerator, inputs: tuple[torch.Tensor, ...], out: Path,
                 dropout: str) -> tuple[Any, str]:
    onnx = _require_onnx()
    names = ["x", "z"][: len(inputs)]
    dynamic = {name: {0: "batch"} for name in names}
    dynamic["y"] = {0: "batch"}
    training = torch.onnx.TrainingMode.PRESERVE if dropout == "train" else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, inputs, str(out), input_names=names, output_names=["y"],
                          dynamic_axes=dynamic, training=training, dynamo=False, opset_version=17)
    onnx.checker.check_model(onnx.load(str(out)))
    try:
        import onnxruntime
    except ImportError:
        return None, "parity not checked: onnxruntime is not installed (pip install onnxruntime)"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def run(*args: torch.Tensor) -> torch.Tensor:
        feeds = {name: a.numpy() for name, a in zip(names, args)}
        return torch.from_numpy(session.run(["y"], feeds)[0])

    return run, ""


def export_generator(run_or_checkpoint: str | os.PathLike[str], format: str = "torchscript", *,
                     out: str | os.PathLike[str] | None = None, dropout: str = "eval", batch_stats: str = "auto",
                     direction: str = "AtoB", size: int | None = None, parity_batch: int = 2,
                     ema: bool = True, plugins: list[str] | tuple[str, ...] = (),
                     trust_checkpoint_plugins: bool = False) -> ExportResult:
    """Export the generator of a run (or checkpoint) and check it against the PyTorch model.

    Args:
        run_or_checkpoint: a run folder (``checkpoints/latest.pt`` is used) or a checkpoint file.
        format: ``torchscript`` or ``onnx`` (ONNX needs the ``onnx`` extra).
        out: the file to write (default: ``RUN/export/<network>.pt`` or ``.onnx``).
        dropout, batch_stats: the inference policy (see the module docstring).
        direction: CycleGAN only: ``AtoB`` exports ``G_A``, ``BtoA`` exports ``G_B``.
        size: image side used for tracing and the parity check (default: the recipe's input size).
        parity_batch: batch size of the parity check.
        ema: export the generator's weight average when the run kept one (``train.ema``).
        plugins, trust_checkpoint_plugins: see :func:`ganzoo.inference.load` (a checkpoint's own
            plugins are never imported unless asked).
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        _require_onnx()  # fail before loading anything
    from ganzoo.inference import load

    model = load(run_or_checkpoint, device="cpu", ema=ema, plugins=plugins,
                 trust_checkpoint_plugins=trust_checkpoint_plugins, command="export")
    recipe = model.recipe
    name = pick_generator(model, direction)
    net, batch_stats = apply_policy(model.networks[name], dropout, batch_stats)
    nz = int(getattr(net, "nz", 0) or 0)
    side = int(size or default_input_size(recipe))
    multiple = int(getattr(net, "size_multiple", 1) or 1)
    if side % multiple:
        raise ExportError(f"size {side} is not a multiple of {multiple}, which {name} needs")
    if batch_stats == "batch" and parity_batch < 2 and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        parity_batch = 2  # batch statistics of one image at the 1x1 bottleneck are degenerate
    wrapper = ExportedGenerator(net, uses_z=nz > 0)
    inputs = _example_inputs(net, parity_batch, side, seed=0)
    checkpoint = Path(getattr(model, "checkpoint_path", run_or_checkpoint))
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    path = Path(out) if out is not None else run_dir / "export" / f"{name}{SUFFIX[format]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "network": name, "component": recipe.model.networks[name]["type"], "model": recipe.model.type,
        "inputs": {"x": [None, int(net.input_nc), None, None], **({"z": [None, nz]} if nz else {})},
        "output": [None, int(getattr(net, "output_nc", 0) or 0), None, None], "value_range": [-1, 1],
        "size_multiple": multiple, "trained_size": default_input_size(recipe), "dropout": dropout,
        "batch_stats": batch_stats, "direction": direction if name != "G" else None,
        "checkpoint": str(checkpoint), "step": int(getattr(model, "step", 0) or 0),
    }
    note = ""
    if format == "torchscript":
        exported: Any = _export_torchscript(wrapper, inputs, path, metadata)
    else:
        exported, note = _export_onnx(wrapper, inputs, path, dropout)
    stochastic = dropout == "train" and any(isinstance(m, nn.modules.dropout._DropoutNd) for m in net.modules())
    diff: float | None = None
    if exported is not None:
        if stochastic and format == "onnx":
            note = "parity not checked: dropout is on and onnxruntime draws its own random masks"
        else:
            # With dropout on, both runs start from the same seed, so they draw the same masks.
            expected = _run_seeded(wrapper, inputs, seed=1)
            got = _run_seeded(exported, inputs, seed=1)
            diff = float((expected - got).abs().max())
            note = (f"max |exported - PyTorch| = {diff:.3g} on a batch of {parity_batch} "
                    f"{side}x{side} random inputs" + (" (same dropout seed)" if stochastic else ""))
    metadata_path = path.with_name(path.name + ".json")
    metadata_path.write_text(json.dumps({**metadata, "format": format, "parity_max_abs_diff": diff}, indent=2))
    return ExportResult(path, metadata_path, format, name, [parity_batch, int(net.input_nc), side, side], nz,
                        dropout, batch_stats, diff, note)


__all__ = ["BATCH_STATS_POLICIES", "DROPOUT_POLICIES", "ExportError", "ExportResult", "ExportedGenerator",
           "FORMATS", "apply_policy", "export_generator", "pick_generator"]
