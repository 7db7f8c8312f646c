"""The general recipe keys: their types, defaults, bounds and choices.

Only the parts of a recipe that do not depend on the model live here (``data``, ``train``,
``log`` and the general ``model`` keys). The model's own keys come from its class (``options``,
``loss_weights``, ``network_kinds``) and each network's keys from its registered constructor, so
:func:`keys_at` asks the registry for those.

Defaults follow the official pix2pix/CycleGAN/BicycleGAN options (``load_size`` 286,
``crop_size`` 256, Adam with lr 2e-4 and betas (0.5, 0.999), 100 + 100 epochs with a linear
decay). A model can change a general default through an optional class attribute
``recipe_defaults`` (``{"model.init": {"type": "xavier"}, "model.gan_loss": "vanilla"}``).

Relative paths (``data.root``) are kept as written and resolve against the current working
directory when used, as in the official code, so a recipe means the same wherever it is stored.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ganzoo.data.shapes import FLAVOURS as SHAPES_FLAVOURS
from ganzoo.data.transforms import DIRECTIONS, PREPROCESS_MODES, SIZE_MULTIPLE_FOR_NONE
from ganzoo.data.shapes import MIN_SIZE as SHAPES_MIN_SIZE
from ganzoo.models.assembly import OPTIMIZERS

#: Marks a key that has no default: leaving it out is an error.
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


@dataclass(frozen=True)
class Key:
    """One recipe key: its default, accepted type(s), bounds, choices and meaning.

    ``type`` may be a tuple; ``float`` also accepts integers (stored as floats), ``bool`` is
    never taken for an integer. ``component`` names a registry kind: the value is then a
    registered name (``type=str``) or a mapping ``{type: <name>, **arguments}`` (``type=dict``,
    a bare name is accepted as shorthand); ``runtime_args`` are the arguments the trainer passes
    itself and a recipe may not set. ``fields`` is the sub-schema of a nested mapping.
    """

    default: Any
    type: type | tuple[type, ...]
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    above: float | None = None
    below: float | None = None
    nullable: bool = False
    pattern: str | None = None
    pattern_help: str | None = None
    item_type: type | None = None
    length: int | None = None
    component: str | None = None
    runtime_args: tuple[str, ...] = ()
    fields: Mapping[str, Key] | None = None
    special: str | None = None  # a value with its own resolver in resolve.py ("optimizer")


#: Preprocess modes that first scale to ``load_size`` and then crop ``crop_size`` from it.
SCALE_THEN_CROP = ("resize_and_crop", "scale_width_and_crop")

SHAPES: dict[str, Key] = {  # the arguments of ganzoo.data.shapes.generate_shapes, with its defaults
    "flavour": Key("shapes-multimodal", str, "which synthetic task the shapes world draws",
                   choices=tuple(SHAPES_FLAVOURS)),
    "size": Key(64, int, "image side in pixels", minimum=SHAPES_MIN_SIZE),
    "n_train": Key(2000, int, "number of training items", minimum=1),
    "n_val": Key(100, int, "number of validation items", minimum=0),
    "n_test": Key(100, int, "number of test items", minimum=0),
    "seed": Key(0, int, "seed of the generated world"),
}

DATA: dict[str, Key] = {
    "dataset": Key("aligned", str, "dataset layout (a 'dataset' registry name)", component="dataset"),
    "root": Key(REQUIRED, str, "dataset folder, relative to the current working directory"),
    "shapes": Key(None, dict, "generate the synthetic shapes world at root when it is missing",
                  nullable=True, fields=SHAPES),
    "direction": Key("AtoB", str, "which side is the input", choices=DIRECTIONS),
    "load_size": Key(286, int, "scale images to this size", minimum=1),
    "crop_size": Key(256, int, "then crop to this size (the network input size)", minimum=1),
    "preprocess": Key("resize_and_crop", str, "how images are scaled and cropped", choices=PREPROCESS_MODES),
    "flip": Key(True, bool, "random horizontal flips while training"),
    "input_nc": Key(None, int, "input channels (null: the generator's input_nc)", nullable=True, minimum=1),
    "output_nc": Key(None, int, "output channels (null: the generator's output_nc)", nullable=True, minimum=1),
    "workers": Key(2, int, "data-loading worker processes", minimum=0),
    "cache": Key(False, bool, "keep every loaded item in memory (small datasets whose items never change: "
                 "no random crop or flip); each worker holds its own copy"),
    "max_items": Key(None, int, "use at most this many items (null: all)", nullable=True, minimum=1),
    "bad_images": Key("error", str, "an unreadable image stops training with its name (error), or every image is "
                      "checked once before training and the bad ones are skipped and reported (skip)",
                      choices=("error", "skip")),
}

#: The optimizer keys every recipe shows; any other argument of the torch optimizer may be given
#: too (``eps``, ``momentum``...). ``weight_decay`` defaults to torch's own value for the type.
OPTIMIZER: dict[str, Key] = {
    "type": Key("adam", str, "optimizer", choices=tuple(OPTIMIZERS)),
    "lr": Key(0.0002, float, "initial learning rate", above=0.0),
    "betas": Key([0.5, 0.999], list, "Adam momentum terms", item_type=float, length=2, minimum=0.0, below=1.0),
    "weight_decay": Key(None, float, "weight decay (default: torch's)", minimum=0.0),
}

TRAIN: dict[str, Key] = {
    "batch_size": Key(1, int, "images per step", minimum=1),
    "epochs": Key(100, int, "epochs at the initial learning rate", minimum=0),
    "epochs_decay": Key(100, int, "epochs while the learning rate decays", minimum=0),
    "max_steps": Key(None, int, "stop after this many steps (overrides epochs)", nullable=True, minimum=1),
    "optimizer": Key({"type": "adam"}, dict, "optimizer of every network (type + torch.optim arguments)",
                     special="optimizer"),
    "optimizers": Key(None, dict, "changes to train.optimizer for single optimizers, by name (bicyclegan, pix2pix: "
                      "one per network; cyclegan: G and D), e.g. {D: {lr: 0.0004}}; resolved in full",
                      nullable=True, special="optimizer_overrides"),
    "scheduler": Key({"type": "linear"}, dict, "learning-rate schedule (a 'scheduler' registry name + arguments)",
                     component="scheduler", runtime_args=("optimizer", "total_steps")),
    "seed": Key(0, int, "seed of weights, noise and data order"),
    "device": Key("auto", str, "auto | cpu | cuda | cuda:N | mps", pattern=r"auto|cpu|mps|cuda(:\d+)?",
                  pattern_help="auto, cpu, cuda, cuda:N or mps"),
    "precision": Key("fp32", str, "floating-point precision", choices=("fp32", "bf16", "fp16")),
    "channels_last": Key(False, bool, "channels-last memory format"),
    "compile": Key(False, bool, "torch.compile the networks"),
    "tuned_cpu_convs": Key(True, bool, "float32 CPU convolutions take the fastest of several equivalent "
                           "formulations, timed per layer signature on first use (like cudnn.benchmark) and recorded "
                           "in checkpoints: oneDNN, im2col + GEMM, Winograd F(4x4, 3x3) and F(3x3, 4x4), stride-1 gradients by "
                           "forward convolution / shifted GEMMs; the same maths, other rounding "
                           "(ganzoo/layers/cpu_convs.py); off under compile, no effect on CUDA"),
    "parallel_branches": Key(True, bool, "run independent parts of a step (BicycleGAN's D and D2 updates) side "
                             "by side on CPU threads, one intra-op thread each: the same maths, 0.89-0.94x the "
                             "step on 2 cores at 32-256 px; in turn on CUDA, in distributed runs and on one thread "
                             "(ganzoo/training/branches.py)"),
    "step_in_backward": Key(True, bool, "update parameters inside the backward pass as their gradients complete "
                            "(every 16 MiB of them) and free those gradients: the same weights bit for bit, a lower peak of "
                            "memory (a network's gradients never all exist at once); for fused Adam/AdamW, off "
                            "under fp16, nonfinite: skip and multi-process runs (ganzoo/training/steps_in_backward.py)"),
    "reuse_freed_memory": Key(True, bool, "on the CPU (Linux, glibc), keep freed memory in the process for the next "
                              "step's tensors instead of returning it and faulting it in again (malloc thresholds "
                              "256 MiB / 1 GiB): CycleGAN 128 px 3-5% faster, the same maths "
                              "(ganzoo/training/cpu_allocator.py)"),
    "nonfinite": Key("stop", str, "what a NaN/inf loss does", choices=("stop", "skip")),
    "ema": Key(0.0, float, "decay of a moving average of the generators' weights, kept beside them and used "
               "for samples and evaluation (0: off; 0.999 averages about the last 1000 steps)", minimum=0, below=1),
    "eval_every": Key(None, int, "evaluate on the val split every N steps (null: never)", nullable=True, minimum=1),
    "eval_metrics": Key(None, list, "metrics evaluated during training (null: all that apply)", nullable=True,
                        item_type=str),
}

LOG: dict[str, Key] = {
    "every": Key(100, int, "log scalars every N steps", minimum=1),
    "samples_every": Key(500, int, "save sample images every N steps", minimum=1),
    "checkpoint_every": Key(1000, int, "save a checkpoint every N steps", minimum=1),
    "keep_last": Key(3, int, "checkpoints kept", minimum=1),
}

#: The general ``model`` keys; the model class adds its own options.
MODEL: dict[str, Key] = {
    "type": Key(REQUIRED, str, "the model (a 'model' registry name)", component="model"),
    "networks": Key(REQUIRED, dict, "network name -> {type: <component>, **arguments}"),
    "init": Key({"type": "normal"}, dict, "weight initialisation (an 'init' registry name + gain)",
                component="init"),
    "gan_loss": Key("lsgan", str, "the GAN objective (a 'gan_loss' registry name)", component="gan_loss"),
    "losses": Key(None, dict, "weights of the model's loss terms (0 removes a term)"),
    "loss_warmup": Key({}, dict, "loss term -> N: its weight ramps linearly to its model.losses value over the first "
                       "N updates, from 1/N of it at the first (KL annealing); terms not named keep their weight"),
}

TOP: dict[str, Key] = {
    "name": Key(None, str, "run name (default: the recipe file's stem)"),
    "plugins": Key([], list, "modules or .py files imported before building", item_type=str),
    "model": Key(REQUIRED, dict, "what is trained", fields=MODEL),
    "data": Key(REQUIRED, dict, "what it is trained on", fields=DATA),
    "train": Key(None, dict, "how it is trained", fields=TRAIN),
    "log": Key(None, dict, "what is recorded and when", fields=LOG),
}

__all__ = ["DATA", "LOG", "MODEL", "OPTIMIZER", "REQUIRED", "SHAPES", "SIZE_MULTIPLE_FOR_NONE", "TOP", "TRAIN",
           "Key", "keys_at"]

#: Top-level keys consumed while loading, never present in a resolved recipe.
LOAD_KEYS = ("base",)


def model_class(tree: Mapping[str, Any]) -> type | None:
    """The model class named by ``tree["model"]["type"]``, or None when it cannot be found yet."""
    from ganzoo.errors import GanzooError
    from ganzoo.registry import get_component

    model = tree.get("model") if isinstance(tree, Mapping) else None
    name = model.get("type") if isinstance(model, Mapping) else None
    if not isinstance(name, str):
        return None
    try:
        return get_component("model", name).factory
    except GanzooError:
        return None


def component_keys(kind: str, name: Any, runtime_args: tuple[str, ...] = ()) -> list[str] | None:
    """The arguments a recipe may give component ``name`` (None: unknown component or ``**kwargs``)."""
    from ganzoo.errors import GanzooError
    from ganzoo.registry import get_component

    if not isinstance(name, str):
        return None
    try:
        entry = get_component(kind, name)
    except GanzooError:
        return None
    hidden = set(runtime_args) | ({"model_name"} if entry.prefix else set())
    keys = ["type"]
    for p in entry.signature().parameters.values():
        if p.kind == p.VAR_KEYWORD:
            return None
        if p.kind != p.VAR_POSITIONAL and p.name not in hidden:
            keys.append(p.name)
    return keys


def optimizer_keys(name: Any) -> list[str] | None:
    """The keys ``train.optimizer`` may hold for optimizer ``name`` (None: unknown optimizer)."""
    import inspect

    if not isinstance(name, str) or name not in OPTIMIZERS:
        return None
    params = inspect.signature(OPTIMIZERS[name]).parameters
    return ["type", *(p for p in params if p != "params")]


def keys_at(path: tuple[str, ...], tree: Mapping[str, Any]) -> list[str] | None:
    """The keys a recipe may hold in the mapping at ``path``.

    None means "any key for now": the mapping's allowed keys depend on a component the
    registry does not know (yet), and resolution will check them. An empty list means the
    value at ``path`` is not a mapping at all.
    """
    if not path:
        return list(TOP)
    section, rest = path[0], path[1:]
    if section == "model":
        return _model_keys(rest, tree)
    fields = TOP[section].fields if section in TOP else None
    if fields is None:
        return []
    for part in rest:
        key = fields.get(part)
        if key is None:
            return []
        if key.special == "optimizer":
            value = _lookup(tree, (section, *rest))
            return optimizer_keys(value.get("type", "adam") if isinstance(value, Mapping) else "adam")
        if key.component is not None and key.type is dict:
            value = _lookup(tree, (section, *rest))
            name = value.get("type", _type_default(key)) if isinstance(value, Mapping) else _type_default(key)
            return component_keys(key.component, name, key.runtime_args)
        if key.fields is None:
            return []
        fields = key.fields
    return list(fields)


def _model_keys(rest: tuple[str, ...], tree: Mapping[str, Any]) -> list[str] | None:
    cls = model_class(tree)
    if not rest:
        return None if cls is None else [*MODEL, *getattr(cls, "options", {})]
    head = rest[0]
    if head == "networks":
        kinds: dict[str, str] | None = getattr(cls, "network_kinds", None) if cls is not None else None
        if len(rest) == 1:
            return None if kinds is None else list(kinds)
        if len(rest) == 2:
            if kinds is None or rest[1] not in kinds:
                return None
            return component_keys(kinds[rest[1]], _lookup(tree, ("model", "networks", rest[1], "type")))
        return []
    if head in ("losses", "loss_warmup"):
        if len(rest) > 1:
            return []
        return None if cls is None else list(getattr(cls, "loss_weights", {}))
    if head == "init":
        if len(rest) > 1:
            return []
        value = _lookup(tree, ("model", "init"))
        name = value.get("type", "normal") if isinstance(value, Mapping) else value
        return component_keys("init", name if isinstance(name, str) else "normal")
    return [] if cls is not None or head in MODEL else None


def _type_default(key: Key) -> Any:
    return key.default.get("type") if isinstance(key.default, Mapping) else key.default


def _lookup(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
