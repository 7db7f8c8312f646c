"""The recipe's typed sections: every general key with its type, default, bounds and meaning.

Each section of a resolved recipe is a frozen dataclass (:class:`Recipe`, :class:`DataConfig`,
:class:`TrainConfig`, :class:`LogConfig`, :class:`ModelConfig`); its fields are declared once here,
with a :class:`Key` in their metadata that validation (``resolve.py``), ``ganzoo info`` and the
generated ``docs/recipes.md`` all read. Consumers read attributes and never restate a default.

The model's own keys come from its class (``options``, ``loss_weights``, ``network_kinds``) and
each network's keys from its registered constructor, so :func:`keys_at` asks the registry for those.

Defaults follow the official pix2pix/CycleGAN/BicycleGAN options (``load_size`` 286,
``crop_size`` 256, Adam with lr 2e-4 and betas (0.5, 0.999), 100 + 100 epochs with a linear
decay). A model can change a general default through an optional class attribute
``recipe_defaults`` (``{"model.init": {"type": "xavier"}, "model.gan_loss": "vanilla"}``).

Relative paths (``data.root``) are kept as written and resolve against the current working
directory when used, as in the official code, so a recipe means the same wherever it is stored.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ganzoo.data.shapes import FLAVOURS as SHAPES_FLAVOURS
from ganzoo.data.shapes import MIN_SIZE as SHAPES_MIN_SIZE
from ganzoo.data.transforms import COLOR_SIDES, DEFAULT_RATIO, DIRECTIONS, PREPROCESS_MODES, SIZE_MULTIPLE_FOR_NONE
from ganzoo.training.optim import OPTIMIZERS

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
    ``common_args`` are keys a component mapping takes beside whichever component it names, which
    ganzoo handles itself and never passes to the component (``train.scheduler.warmup_steps``).
    """

    default: Any
    type: type | tuple[type, ...]
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    above: float | None = None
    below: float | None = None
    maximum: float | None = None
    nullable: bool = False
    pattern: str | None = None
    pattern_help: str | None = None
    item_type: type | None = None
    length: int | None = None
    component: str | None = None
    runtime_args: tuple[str, ...] = ()
    fields: Mapping[str, Key] | None = None
    special: str | None = None  # a value with its own resolver in resolve.py ("optimizer")
    common_args: Mapping[str, Key] | None = None


#: A model's own recipe key (``model.nz``...): the same declaration as a general key.
Option = Key


def key(default: Any, type: type | tuple[type, ...], help: str, **rules: Any) -> Any:
    """A dataclass field declared with its recipe :class:`Key` (validation, docs and ``ganzoo info``)."""
    declared = Key(default, type, help, **rules)
    if default is REQUIRED:
        return dataclasses.field(metadata={"key": declared})
    return dataclasses.field(default=None, metadata={"key": declared})


def keys_of(section: type) -> dict[str, Key]:
    """The :class:`Key` of every field of a recipe section class, in declaration order."""
    return {f.name: f.metadata["key"] for f in dataclasses.fields(section) if "key" in f.metadata}


def frozen(value: Any) -> Any:
    """A read-only copy of plain recipe data: mappings become ``MappingProxyType``, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """Plain YAML-able data (dicts, lists, scalars) from a section, a frozen mapping or a value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else {
            f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Section:
    """Shared behaviour of the recipe sections: built from validated plain data, dumped back to it."""

    @classmethod
    def from_plain(cls, values: Mapping[str, Any]) -> Any:
        """The section from already validated values (nested sections are built by their own class)."""
        built = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            value = values[f.name]
            nested = f.metadata.get("section")
            built[f.name] = nested.from_plain(value) if nested is not None and value is not None else frozen(value)
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def section(cls: type, default: Any, help: str, *, nullable: bool = False) -> Any:
    """A field holding a nested section (``data.shapes``)."""
    declared = Key(default, dict, help, nullable=nullable, fields=keys_of(cls))
    return dataclasses.field(default=None, metadata={"key": declared, "section": cls})


#: Preprocess modes that first scale to ``load_size`` and then crop ``crop_size`` from it.
SCALE_THEN_CROP = ("resize_and_crop", "scale_width_and_crop")

#: The largest image side and the largest seed a recipe may ask for: beyond them a run fails
#: with an allocation or overflow error long after the recipe was accepted.
MAX_IMAGE_SIDE = 8192
MAX_SEED = 2**63 - 1


@dataclass(frozen=True, kw_only=True)
class ShapesConfig(Section):
    """``data.shapes``: the arguments of :func:`ganzoo.data.shapes.generate_shapes`."""

    flavour: str = key("shapes-multimodal", str, "which synthetic task the shapes world draws",
                       choices=tuple(SHAPES_FLAVOURS))
    size: int = key(64, int, "image side in pixels", minimum=SHAPES_MIN_SIZE, maximum=1024)
    n_train: int = key(2000, int, "number of training items", minimum=1, maximum=1_000_000)
    n_val: int = key(100, int, "number of validation items", minimum=0, maximum=1_000_000)
    n_test: int = key(100, int, "number of test items", minimum=0, maximum=1_000_000)
    seed: int = key(0, int, "seed of the generated world", minimum=0, maximum=MAX_SEED)


@dataclass(frozen=True, kw_only=True)
class AugmentConfig(Section):
    """``data.augment``: random transforms of training items after the preprocessing (:class:`ganzoo.data.
    transforms.Augment`), drawn per item from its (seed, epoch, index) stream; val/test items are never
    augmented. Every transform is off at its default."""

    brightness: float = key(0.0, float, "colour jitter: brightness factor drawn in [max(0, 1 - v), 1 + v] (0: off)",
                            minimum=0.0)
    contrast: float = key(0.0, float, "colour jitter: contrast factor drawn in [max(0, 1 - v), 1 + v] (0: off)",
                          minimum=0.0)
    saturation: float = key(0.0, float, "colour jitter: saturation factor drawn in [max(0, 1 - v), 1 + v] (0: off; "
                            "RGB images only)", minimum=0.0)
    hue: float = key(0.0, float, "colour jitter: hue shift drawn in [-v, v] of the colour circle (0: off; RGB only)",
                     minimum=0.0, maximum=0.5)
    color_on: str = key("both", str, "which side colour jitter changes: both (aligned pairs: the same factors on A "
                        "and B, so the target's colours stay a function of the input's), A (the input only) or B (the "
                        "target only); see docs/toolbox.md", choices=COLOR_SIDES)
    scale: tuple[float, ...] | None = key(None, list, "random resized crop: the crop's share of the image area, "
                                          "[low, high] within (0, 1], resized back to the image size (null: off)",
                                          nullable=True, item_type=float, length=2, above=0.0, maximum=1.0)
    ratio: tuple[float, ...] = key(list(DEFAULT_RATIO), list, "random resized crop: its aspect-ratio range "
                                   "[low, high] (drawn log-uniformly)", item_type=float, length=2, above=0.0)
    rotation: float = key(0.0, float, "random rotation by an angle drawn in [-v, v] degrees (0: off)", minimum=0.0,
                          maximum=180.0)
    fill: int = key(0, int, "grey level (0-255) of the corners a rotation uncovers", minimum=0, maximum=255)


@dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
    """``data``: what a run is trained on."""

    dataset: str = key("aligned", str, "dataset layout (a 'dataset' registry name)", component="dataset")
    root: str = key(REQUIRED, str, "dataset folder, relative to the current working directory")
    shapes: ShapesConfig | None = section(ShapesConfig, None, "generate the synthetic shapes world at root when it "
                                          "is missing", nullable=True)
    direction: str = key("AtoB", str, "which side is the input", choices=DIRECTIONS)
    load_size: int = key(286, int, "scale images to this size", minimum=1, maximum=MAX_IMAGE_SIDE)
    crop_size: int = key(256, int, "then crop to this size (the network input size)", minimum=1,
                         maximum=MAX_IMAGE_SIDE)
    preprocess: str = key("resize_and_crop", str, "how images are scaled and cropped", choices=PREPROCESS_MODES)
    flip: bool = key(True, bool, "random horizontal flips while training")
    input_nc: int | None = key(None, int, "input channels (null: the generator's input_nc)", nullable=True,
                               minimum=1)
    output_nc: int | None = key(None, int, "output channels (null: the generator's output_nc)", nullable=True,
                                minimum=1)
    workers: int | None = key(2, int, "data-loading worker processes (null: min(4, the CPUs available)); never more "
                              "than the CPUs available, which a larger number is lowered to", minimum=0,
                              nullable=True)
    cache: bool = key(False, bool, "keep every loaded item in memory (small datasets whose items never change: "
                      "no random crop or flip); each worker holds its own copy")
    max_items: int | None = key(None, int, "use at most this many items (null: all)", nullable=True, minimum=1)
    bad_images: str = key("error", str, "an unreadable image stops training with its name (error), or every image "
                          "is checked once before training and the bad ones are skipped and reported (skip)",
                          choices=("error", "skip"))
    augment: AugmentConfig | None = section(AugmentConfig, None, "random resized crop, rotation and colour jitter "
                                            "of training items (null: none); A and B of an aligned pair get the same "
                                            "geometry", nullable=True)


@dataclass(frozen=True, kw_only=True)
class EvalWeightsConfig(Section):
    """``train.eval_weights``: local weight files of the metrics evaluated during training (the files
    ``ganzoo eval --inception-weights / --lpips-weights`` take); relative to the working directory."""

    inception: str | None = key(None, str, "InceptionV3 weights for fid/kid (torch-fidelity's "
                                "weights-inception-2015-12-05-6726825d.pth; null: $GANZOO_INCEPTION_WEIGHTS or the "
                                "torch hub cache)", nullable=True)
    lpips: str | None = key(None, str, "ImageNet AlexNet weights of diversity's LPIPS backbone (torchvision's "
                            "alexnet-owt-7be5be79.pth; null: $GANZOO_LPIPS_BACKBONE or the torch hub cache)",
                            nullable=True)


#: The optimizer keys every recipe shows; any other argument of the torch optimizer may be given
#: too (``eps``, ``momentum``...). ``weight_decay`` defaults to torch's own value for the type.
OPTIMIZER: dict[str, Key] = {
    "type": Key("adam", str, "optimizer", choices=tuple(OPTIMIZERS)),
    "lr": Key(0.0002, float, "initial learning rate", above=0.0),
    "betas": Key([0.5, 0.999], list, "Adam momentum terms", item_type=float, length=2, minimum=0.0, below=1.0),
    "weight_decay": Key(None, float, "weight decay (default: torch's)", minimum=0.0),
}


@dataclass(frozen=True, kw_only=True)
class EarlyStopConfig(Section):
    """``train.early_stop``: end the run cleanly when a watched value stops improving (:mod:`ganzoo.training.monitor`)."""

    watch: str = key(REQUIRED, str, "a loss the model logs (G_total, l1, D ...: checked every log.every steps, as its "
                     "mean since the last check) or an evaluation score, <metric> or <metric>.<score> (checked at every "
                     "train.eval_every evaluation)")
    patience: int = key(5, int, "checks (log steps or evaluations) without improvement before the run stops",
                        minimum=1)
    mode: str | None = key(None, str, "min (lower is better) or max; null: min for a loss, required for a metric",
                           nullable=True, choices=("min", "max"))
    min_delta: float = key(0.0, float, "an improvement must beat the best value by more than this", minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class KeepBestConfig(Section):
    """``log.keep_best``: keep the weights of the best evaluation in ``checkpoints/best.pt``."""

    metric: str = key(REQUIRED, str, "the evaluation score that decides: <metric> or <metric>.<score> "
                      "(needs train.eval_every)")
    mode: str = key(REQUIRED, str, "min (lower is better) or max", choices=("min", "max"))


#: Keys ``train.scheduler`` takes whatever the scheduler: ganzoo applies them around any registered one.
SCHEDULER_COMMON: dict[str, Key] = {
    "warmup_steps": Key(0, int, "linear learning-rate warm-up over the first N steps, composed with any scheduler: "
                        "step k (from 1) runs at k/N of the scheduler's rate, step N and later at the full rate "
                        "(0: none)", minimum=0),
}


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """``train``: how a run is trained."""

    batch_size: int = key(1, int, "images per step", minimum=1, maximum=65536)
    epochs: int = key(100, int, "epochs at the initial learning rate", minimum=0)
    epochs_decay: int = key(100, int, "epochs while the learning rate decays", minimum=0)
    max_steps: int | None = key(None, int, "stop after this many steps (overrides epochs)", nullable=True,
                                minimum=1)
    optimizer: Mapping[str, Any] = key({"type": "adam"}, dict, "optimizer of every network (type + torch.optim "
                                       "arguments)", special="optimizer")
    optimizers: Mapping[str, Mapping[str, Any]] | None = key(
        None, dict, "changes to train.optimizer for single update groups, by name (bicyclegan, pix2pix: one per "
        "network; cyclegan: G and D), e.g. {D: {lr: 0.0004}}; resolved in full", nullable=True,
        special="optimizer_overrides")
    scheduler: Mapping[str, Any] = key({"type": "linear"}, dict, "learning-rate schedule (a 'scheduler' registry "
                                       "name + arguments)", component="scheduler",
                                       runtime_args=("optimizer", "total_steps"), common_args=SCHEDULER_COMMON)
    seed: int = key(0, int, "seed of weights, noise and data order", minimum=0, maximum=MAX_SEED)
    device: str = key("auto", str, "auto | cpu | cuda | cuda:N", pattern=r"auto|cpu|cuda(:\d+)?",
                      pattern_help="auto, cpu, cuda or cuda:N")
    precision: str = key("fp32", str, "floating-point precision", choices=("fp32", "bf16", "fp16"))
    deterministic: bool = key(False, bool, "on CUDA, deterministic kernels (cuDNN deterministic, no autotuning, "
                              "torch.use_deterministic_algorithms): two runs give the same weights bit for bit, "
                              "as they always do on the CPU")
    cudnn_benchmark: bool | None = key(None, bool, "on CUDA, let cuDNN time its convolution algorithms on the first "
                                       "steps and keep the fastest (torch.backends.cudnn.benchmark); null: on when "
                                       "every image reaches the networks at one size (a cropping data.preprocess, "
                                       "or the generated shapes world), off when sizes vary (scale_width, none); "
                                       "always off under train.deterministic", nullable=True)
    channels_last: bool = key(False, bool, "channels-last memory format")
    compile: bool = key(False, bool, "torch.compile the networks")
    step_in_backward: bool = key(True, bool, "update parameters inside the backward pass as their gradients "
                                 "complete and free those gradients: the same weights bit for bit, a lower peak "
                                 "of memory; for fused Adam/AdamW, off under fp16, nonfinite: skip and "
                                 "multi-process runs")
    accelerators: tuple[Mapping[str, Any], ...] = key(
        [], list, "accelerator plugins (an 'accelerator' registry name or {type: name, **arguments}) that may "
        "swap layer implementations for speed, e.g. [cpu_kernels] from plugins/ganzoo-cpu-kernels",
        special="accelerators")
    nonfinite: str = key("stop", str, "what a NaN/inf loss does", choices=("stop", "skip"))
    ema: float = key(0.0, float, "decay of a moving average of the generators' weights, kept beside them and "
                     "used for samples and evaluation (0: off; 0.999 averages about the last 1000 steps)",
                     minimum=0, below=1)
    eval_every: int | None = key(None, int, "evaluate on the val split every N steps (null: never)",
                                 nullable=True, minimum=1)
    eval_metrics: tuple[str, ...] | None = key(None, list, "metrics evaluated during training (null: all that "
                                               "apply); one that cannot run (no weights, wrong file) is recorded as "
                                               "unavailable with a warning, and training goes on", nullable=True,
                                               item_type=str)
    eval_weights: EvalWeightsConfig = section(EvalWeightsConfig, None, "weight files of the metrics evaluated "
                                              "during training (never downloaded)")
    early_stop: EarlyStopConfig | None = section(EarlyStopConfig, None, "stop the run when a loss or an evaluation "
                                                 "score stops improving: a clean end with a final checkpoint, and a "
                                                 "resume that knows it finished (null: train to the end)",
                                                 nullable=True)


@dataclass(frozen=True, kw_only=True)
class WandbConfig(Section):
    """``log.wandb``: send the run's scalars to Weights & Biases too (needs ``pip install wandb``)."""

    project: str | None = key(None, str, "wandb project (null: wandb's default)", nullable=True)
    entity: str | None = key(None, str, "wandb user or team (null: wandb's default)", nullable=True)
    mode: str = key("online", str, "online, offline (synced later with `wandb sync`) or disabled",
                    choices=("online", "offline", "disabled"))


@dataclass(frozen=True, kw_only=True)
class LogConfig(Section):
    """``log``: what a run records and when."""

    every: int = key(100, int, "log scalars every N steps", minimum=1)
    samples_every: int = key(500, int, "save sample images every N steps", minimum=1)
    checkpoint_every: int = key(1000, int, "save a checkpoint every N steps", minimum=1)
    checkpoint_every_epochs: int | None = key(None, int, "also save a checkpoint at the end of every N epochs "
                                              "(null: only log.checkpoint_every)", nullable=True, minimum=1)
    keep_last: int = key(3, int, "checkpoints kept: the newest two whole (a resume reads them), older ones with "
                         "weights only (enough to sample, evaluate and export)", minimum=1)
    final_eval: bool = key(False, bool, "when the run ends, score the model on the val split (the shapes-world "
                           "metrics that apply, or train.eval_metrics), print the key figures and write a labelled "
                           "sample sheet, OUT/final/samples.png, and the scores, OUT/final/eval.json")
    keep_best: KeepBestConfig | None = section(KeepBestConfig, None, "write checkpoints/best.pt (weights, step and "
                                               "score) whenever an evaluation during training (train.eval_every) beats "
                                               "every earlier one (null: no best checkpoint)", nullable=True)
    wandb: WandbConfig | None = section(WandbConfig, None, "also log every scalar TensorBoard gets (losses, learning "
                                        "rates, evaluation scores) to Weights & Biases; the run fails at start-up "
                                        "when the wandb package is missing (null: no wandb)", nullable=True)


#: The general ``model`` keys; the model class adds its own options.
MODEL: dict[str, Key] = {
    "type": Key(REQUIRED, str, "the model (a 'model' registry name)", component="model"),
    "networks": Key(REQUIRED, dict, "network name -> {type: <component>, **arguments}"),
    "init": Key({"type": "normal"}, dict, "weight initialisation (an 'init' registry name + gain)",
                component="init"),
    "gan_loss": Key("lsgan", str, "the GAN objective (a 'gan_loss' registry name)", component="gan_loss"),
    "losses": Key(None, dict, "weights of the model's loss terms (0 removes a term)"),
    "loss_warmup": Key({}, dict, "loss term -> N: its weight ramps linearly to its model.losses value over the "
                       "first N updates, from 1/N of it at the first (KL annealing); terms not named keep their "
                       "weight"),
}


@dataclass(frozen=True)
class ModelConfig:
    """``model``: what is trained. ``options`` holds the model class's own keys (``options.nz``)."""

    type: str
    networks: Mapping[str, Mapping[str, Any]]
    init: Mapping[str, Any]
    gan_loss: str
    losses: Mapping[str, float]
    loss_warmup: Mapping[str, int]
    options: Any

    def to_dict(self) -> dict[str, Any]:
        # The model's options sit beside the general keys in a recipe file (model.nz), as written.
        general = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "options"}
        networks = general.pop("networks")
        return {"type": general.pop("type"), "networks": networks, **general, **plain(self.options)}


def options_class(model_cls: type) -> type:
    """A frozen dataclass with one typed field per ``options`` entry of a model class (cached on it)."""
    cached = model_cls.__dict__.get("_options_class")
    if cached is not None:
        return cached
    declared: dict[str, Key] = getattr(model_cls, "options", {})
    fields = [(name, Any, dataclasses.field(default=None, metadata={"key": k})) for name, k in declared.items()]
    made = dataclasses.make_dataclass(f"{model_cls.__name__}Options", fields, frozen=True)
    model_cls._options_class = made  # type: ignore[attr-defined]
    return made


@dataclass(frozen=True)
class Recipe:
    """A fully resolved recipe: every default filled in, every value checked (``resolve_recipe``)."""

    name: str
    plugins: tuple[str, ...]
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    log: LogConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as ``ganzoo info`` prints it and checkpoints store it; resolves to an equal recipe."""
        return {"name": self.name, "plugins": list(self.plugins), "model": self.model.to_dict(),
                "data": self.data.to_dict(), "train": self.train.to_dict(), "log": self.log.to_dict()}

    def replace(self, **sections: Any) -> Recipe:
        """A copy with some sections replaced (``recipe.replace(train=...)``)."""
        return dataclasses.replace(self, **sections)


SHAPES = keys_of(ShapesConfig)
DATA = keys_of(DataConfig)
TRAIN = keys_of(TrainConfig)
LOG = keys_of(LogConfig)

TOP: dict[str, Key] = {
    "name": Key(None, str, "run name (default: the recipe file's stem)", pattern=r"[A-Za-z0-9_.+-]+",
                pattern_help="letters, digits, _ . + - (it names the run folder)"),
    "plugins": Key([], list, "modules or .py files imported before building", item_type=str),
    "model": Key(REQUIRED, dict, "what is trained", fields=MODEL),
    "data": Key(REQUIRED, dict, "what it is trained on", fields=DATA),
    "train": Key(None, dict, "how it is trained", fields=TRAIN),
    "log": Key(None, dict, "what is recorded and when", fields=LOG),
}

__all__ = ["DATA", "LOG", "MODEL", "OPTIMIZER", "REQUIRED", "SHAPES", "SIZE_MULTIPLE_FOR_NONE", "TOP", "TRAIN",
           "DataConfig", "EvalWeightsConfig", "Key", "LogConfig", "ModelConfig", "Option", "Recipe", "ShapesConfig",
           "TrainConfig", "keys_at"]

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
            own = component_keys(key.component, name, key.runtime_args)
            return None if own is None else [*own, *(key.common_args or {})]
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
