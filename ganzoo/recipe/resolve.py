"""Turning a raw recipe into a fully resolved, validated one.

Resolution fills every default (the general schema, the model's options and loss weights, each
network's constructor defaults and the arguments the model derives for its networks) and checks
everything that can be checked without data: unknown keys, types, ranges, choices, registered
names, and the combinations that only show once the networks exist. For those the networks are
built on PyTorch's ``meta`` device, which allocates nothing, so checking a 50M-parameter recipe
takes milliseconds.

Every problem is a :class:`~ganzoo.errors.RecipeError` naming the key path.
"""
from __future__ import annotations

import dataclasses
import inspect
import reprlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.contracts import ensure_contract
from ganzoo.errors import GanzooError, RecipeError, did_you_mean
from ganzoo.recipe import schema
from ganzoo.recipe.load import deep_merge
from ganzoo.recipe.schema import REQUIRED, DataConfig, Key, LogConfig, ModelConfig, Recipe, TrainConfig
from ganzoo.registry import Component, check_arguments, get_component, registry
from ganzoo.training.optim import OPTIMIZERS

_NONE = type(None)
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               dict: "a mapping", list: "a list", _NONE: "null"}


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 40, 40


def _short(value: Any, limit: int = 60) -> str:
    text = _REPR.repr(value)  # bounded however large the value: an alias bomb stays one short line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _types(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _describe(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in types)


def check_type(path: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """``value`` if it is of an ``expected`` type (an int is taken as a float); else a RecipeError."""
    types = _types(expected)
    if isinstance(value, bool):
        if bool in types:
            return value
    elif isinstance(value, int) and int not in types and float in types:
        return float(value)
    elif isinstance(value, float) and float in types:
        if not math.isfinite(value):
            raise RecipeError(path, f"must be a finite number, got {value!r}")
        return value
    elif value is None and _NONE in types:
        return None
    elif any(t not in (bool, float, _NONE) and isinstance(value, t) for t in types):
        return value
    raise RecipeError(path, f"expected {_describe(types)}, got {type(value).__name__} {_short(value)}")


def check_bounds(path: str, value: Any, key: Key) -> None:
    """Raise a RecipeError when a number is out of the key's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if key.minimum is not None and value < key.minimum:
        raise RecipeError(path, f"must be >= {key.minimum}, got {value!r}")
    if key.above is not None and not value > key.above:
        raise RecipeError(path, f"must be > {key.above}, got {value!r}")
    if key.below is not None and not value < key.below:
        raise RecipeError(path, f"must be < {key.below}, got {value!r}")
    if key.maximum is not None and value > key.maximum:
        raise RecipeError(path, f"must be <= {key.maximum}, got {value!r}")


def check_value(path: str, value: Any, key: Key) -> Any:
    """Validate one plain value against its key (type, bounds, choices, pattern, list items)."""
    if value is None:
        if key.nullable:
            return None
        raise RecipeError(path, f"must not be null; expected {_describe(_types(key.type))}")
    value = check_type(path, value, key.type)
    if key.choices is not None and value not in key.choices:
        shown = ", ".join(map(str, key.choices))
        raise RecipeError(path, f"{_short(value)} is not one of: {shown}",
                          hint=did_you_mean(str(value), map(str, key.choices)))
    if key.pattern is not None and isinstance(value, str) and not re.fullmatch(key.pattern, value):
        raise RecipeError(path, f"{_short(value)} is not valid; expected {key.pattern_help or key.pattern}")
    if isinstance(value, list):
        if key.length is not None and len(value) != key.length:
            raise RecipeError(path, f"expected a list of {key.length} items, got {len(value)}")
        if key.item_type is not None:
            value = [check_type(f"{path}[{i}]", item, key.item_type) for i, item in enumerate(value)]
            for i, item in enumerate(value):
                check_bounds(f"{path}[{i}]", item, key)
        return value
    check_bounds(path, value, key)
    return value


def check_keys(path: str, given: Mapping[Any, Any], allowed: list[str], what: str = "key") -> None:
    """Raise a RecipeError for the first key of ``given`` not in ``allowed`` (with a suggestion)."""
    for key in given:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed) or f"{what}s here: {', '.join(allowed) or '(none)'}"
            raise RecipeError(_join(path, key), f"unknown {what}", hint=hint)


def _mapping(path: str, value: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecipeError(path, f"expected a mapping, got {type(value).__name__} {_short(value)}")
    return dict(value)


def _lookup_component(path: str, kind: str, name: Any) -> Component:
    if not isinstance(name, str):
        raise RecipeError(path, f"expected a {kind} name, got {type(name).__name__} {_short(name)}")
    try:
        return get_component(kind, name)
    except GanzooError as exc:
        raise RecipeError(path, exc.message, hint=exc.hint) from None


def _simple_annotation(annotation: Any) -> tuple[type, ...] | None:
    """The types a constructor annotation such as ``int`` or ``"float | None"`` allows, if simple."""
    if annotation is inspect.Parameter.empty:
        return None
    names = {int: "int", float: "float", bool: "bool", str: "str", _NONE: "None"}
    by_name = {v: k for k, v in names.items()}
    if isinstance(annotation, type):
        return (annotation,) if annotation in names else None
    if isinstance(annotation, str):
        parts = [p.strip() for p in annotation.replace("Optional[", "").rstrip("]").split("|")]
        if all(p in by_name for p in parts):
            return tuple(by_name[p] for p in parts)
    return None


def resolve_arguments(path: str, entry: Component, given: Mapping[Any, Any],
                      derived: Mapping[str, Any] | None = None, hidden: tuple[str, ...] = (),
                      derived_by: str = "") -> dict[str, Any]:
    """``{type: name, **arguments}`` of one component: the given arguments, checked, with defaults.

    ``derived`` are arguments the model passes itself: they fill absent keys and must agree with
    given ones. ``hidden`` are arguments supplied at run time that a recipe may not set.
    """
    derived = dict(derived or {})
    params = [p for p in entry.signature().parameters.values() if p.kind != p.VAR_POSITIONAL]
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params)
    hidden_set = set(hidden) | ({"model_name"} if entry.prefix else set())
    named = [p for p in params if p.kind != p.VAR_KEYWORD and p.name not in hidden_set]
    accepted = [p.name for p in named]
    if not open_ended:
        for key in given:
            if key not in accepted:
                hint = did_you_mean(str(key), accepted) or f"it accepts: {', '.join(accepted) or '(nothing)'}"
                if key in hidden_set:
                    hint = "it is supplied at run time"
                raise RecipeError(_join(path, key), f"is not an argument of {entry.kind} {entry.name!r}",
                                  hint=hint)
        for key, value in derived.items():
            if key not in accepted:
                raise RecipeError(path, f"{derived_by} passes {key}={value!r} to it, but {entry.kind} "
                                  f"{entry.name!r} has no argument {key!r}",
                                  hint=f"choose a {entry.kind} that takes {key}")
    for key, value in derived.items():
        if key in given and given[key] != value:
            raise RecipeError(_join(path, key), f"is {_short(given[key])}, but {derived_by} gives it "
                              f"{_short(value)}", hint=f"remove it (it is filled in) or set it to {value!r}")
    resolved: dict[str, Any] = {"type": entry.name}
    for p in named:
        key_path = _join(path, p.name)
        if p.name in given:
            value = given[p.name]
        elif p.name in derived:
            value = derived[p.name]
        elif p.default is not inspect.Parameter.empty:
            resolved[p.name] = _copy(p.default)
            continue
        else:
            raise RecipeError(key_path, f"is required by {entry.kind} {entry.name!r} and has no default")
        types = _simple_annotation(p.annotation)
        if types is None and p.default is not inspect.Parameter.empty and p.default is not None:
            types = (type(p.default),) if type(p.default) in (int, float, bool, str) else None
            if types == (int,) and isinstance(value, float):
                types = (int, float)  # an int default does not make a float argument wrong
        resolved[p.name] = check_type(key_path, value, types) if types else value
    for key, value in given.items():
        if key not in resolved:
            resolved[key] = value
    return resolved


def _resolve_component_mapping(path: str, value: Any, key: Key) -> dict[str, Any]:
    """A ``{type: name, **arguments}`` value (a bare name is shorthand for ``{type: name}``)."""
    if isinstance(value, str):
        value = {"type": value}
    given = _mapping(path, value)
    default_name = schema._type_default(key)
    name = given.pop("type", default_name)
    assert key.component is not None
    entry = _lookup_component(_join(path, "type"), key.component, name)
    # Keys taken beside any component's own arguments (train.scheduler.warmup_steps): ganzoo's, not the component's.
    common = {arg: check_value(_join(path, arg), given.pop(arg) if arg in given else _copy(spec.default), spec)
              for arg, spec in (key.common_args or {}).items()}
    resolved = resolve_arguments(path, entry, given, hidden=key.runtime_args)
    try:
        check_arguments(entry, {k: v for k, v in resolved.items() if k != "type"}
                        | {a: None for a in key.runtime_args if a in entry.signature().parameters})
    except GanzooError as exc:
        raise RecipeError(path, exc.message, hint=exc.hint) from None
    return {**resolved, **common}


def _resolve_optimizer(path: str, value: Any) -> dict[str, Any]:
    """``train.optimizer``: the general keys with defaults, other torch arguments as given, all tried out."""
    given = _mapping(path, {"type": value} if isinstance(value, str) else value)
    fields = schema.OPTIMIZER
    kind = check_value(_join(path, "type"), given.get("type", fields["type"].default), fields["type"])
    optimizer_cls = OPTIMIZERS[kind]
    params = inspect.signature(optimizer_cls).parameters
    allowed = schema.optimizer_keys(kind) or []
    check_keys(path, given, allowed, what="argument")
    resolved: dict[str, Any] = {"type": kind}
    for name in ("lr", "betas", "weight_decay"):
        if name not in params:
            continue
        default = fields[name].default
        if default is None:  # the optimizer's own default (AdamW decays by 0.01, the others not at all)
            default = params[name].default
        resolved[name] = check_value(_join(path, name), given.get(name, _copy(default)), fields[name])
    for name, item in given.items():
        resolved.setdefault(name, item)
    trial = {k: tuple(v) if k == "betas" else v for k, v in resolved.items() if k not in ("type", "fused")}
    try:  # torch checks the values (eps >= 0, momentum with nesterov...): ask it on one dummy parameter
        optimizer_cls([torch.zeros(1, requires_grad=True)], **trial)
    except Exception as exc:  # noqa: BLE001  (any refusal is a recipe problem)
        raise RecipeError(path, f"torch.optim.{optimizer_cls.__name__} refuses these settings: {exc}") from None
    return resolved


def _resolve_optimizer_overrides(recipe: dict[str, Any], cls: type) -> dict[str, Any] | None:
    """``train.optimizers``: each named optimizer's changes merged into ``train.optimizer`` and resolved.

    An entry that changes the optimizer ``type`` starts afresh: the arguments of another optimizer
    do not carry over.
    """
    path = "train.optimizers"
    given = recipe["train"].get("optimizers")
    if given is None:
        return None
    given = _mapping(path, given)
    names = list(cls.update_groups(recipe["model_config"]))
    check_keys(path, given, names, what="optimizer")
    base = recipe["train"]["optimizer"]
    resolved: dict[str, Any] = {}
    for name, changes in given.items():
        changes = _mapping(_join(path, name), {"type": changes} if isinstance(changes, str) else changes)
        start = base if changes.get("type", base["type"]) == base["type"] else {}
        resolved[name] = _resolve_optimizer(_join(path, name), {**_copy(start), **changes})
    return resolved


def resolve_section(path: str, value: Any, fields: Mapping[str, Key]) -> dict[str, Any]:
    """A mapping checked against ``fields``, with every absent key set to its default."""
    given = _mapping(path, value)
    check_keys(path, given, list(fields))
    resolved: dict[str, Any] = {}
    for name, key in fields.items():
        key_path = _join(path, name)
        if name not in given:
            if key.default is REQUIRED:
                raise RecipeError(key_path, f"is required ({key.help})")
            if key.fields is not None and not key.nullable:
                resolved[name] = resolve_section(key_path, None, key.fields)
            elif key.special is not None or (key.component is not None and key.type is dict):
                resolved[name] = resolve_value(key_path, key.default, key)
            else:
                resolved[name] = _copy(key.default)
            continue
        resolved[name] = resolve_value(key_path, given[name], key)
    return resolved


def resolve_value(path: str, value: Any, key: Key) -> Any:
    """One key's value: a nested section, a component, or a plain value."""
    if key.special == "optimizer":
        return _resolve_optimizer(path, value)
    if key.special == "optimizer_overrides":  # needs the model and train.optimizer: resolved in _resolve
        return _copy(value)
    if key.special == "accelerators":
        items = check_value(path, value, key)
        accelerator = Key({}, dict, "accelerator", component="accelerator")
        return [_resolve_component_mapping(f"{path}[{i}]", item, accelerator) for i, item in enumerate(items)]
    if key.fields is not None:
        if value is None and key.nullable:
            return None
        return resolve_section(path, value, key.fields)
    if key.component is not None and key.type is dict:
        return _resolve_component_mapping(path, value, key)
    value = check_value(path, value, key)
    if key.component is not None and isinstance(value, str):
        _lookup_component(path, key.component, value)
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # tuples become lists so the recipe dumps as plain YAML
        return [_copy(v) for v in value]
    return value


def _nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.init": x}`` -> ``{"model": {"init": x}}``."""
    tree: dict[str, Any] = {}
    for dotted_key, value in dotted.items():
        node = tree
        *parents, last = dotted_key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = _copy(value)
    return tree


def model_spec(recipe: Mapping[str, Any]) -> type:
    """The model class a recipe names (a RecipeError when it names none or an unknown one)."""
    model = recipe.get("model")
    if not isinstance(model, Mapping):
        raise RecipeError("model", "is required: a mapping with at least type and networks"
                          if model is None else f"expected a mapping, got {type(model).__name__}")
    if "type" not in model:
        from ganzoo.registry import list_components

        raise RecipeError("model.type", "is required",
                          hint=f"registered models: {', '.join(list_components('model')['model']) or '(none)'}")
    return _lookup_component("model.type", "model", model["type"]).factory


def _option_keys(cls: type) -> dict[str, Key]:
    return {name: dataclasses.replace(option, nullable=option.nullable or option.default is None
                                      or _NONE in _types(option.type))
            for name, option in getattr(cls, "options", {}).items()}


def model_config(resolved: Mapping[str, Any], cls: type) -> ModelConfig:
    """The typed ``model`` section from its resolved plain form (options beside the general keys)."""
    general = {name: schema.frozen(resolved[name]) for name in schema.MODEL}
    options = schema.options_class(cls)(**{name: schema.frozen(resolved[name]) for name in getattr(cls, "options", {})})
    return ModelConfig(**general, options=options)


def _resolve_model(model: Mapping[Any, Any], cls: type) -> dict[str, Any]:
    path = "model"
    options = _option_keys(cls)
    check_keys(path, model, [*schema.MODEL, *options])
    resolved: dict[str, Any] = {"type": model["type"]}
    # Options first: the required networks and their derived arguments depend on them.
    option_values = {name: resolve_value(_join(path, name), model[name], key) if name in model
                     else _copy(key.default) for name, key in options.items()}
    resolved["networks"] = {}
    resolved["init"] = resolve_value("model.init", model.get("init", schema.MODEL["init"].default),
                                     schema.MODEL["init"])
    default_loss = getattr(cls, "default_gan_loss", schema.MODEL["gan_loss"].default)
    resolved["gan_loss"] = resolve_value("model.gan_loss", model.get("gan_loss", default_loss),
                                         schema.MODEL["gan_loss"])
    weights: dict[str, float] = dict(getattr(cls, "loss_weights", {}))
    given_losses = _mapping("model.losses", model.get("losses"))
    check_keys("model.losses", given_losses, list(weights), what="loss term")
    weight_key = Key(0.0, float, "loss weight", minimum=0.0)
    resolved["losses"] = {term: check_value(f"model.losses.{term}", given_losses.get(term, default), weight_key)
                          for term, default in weights.items()}
    given_warmup = _mapping("model.loss_warmup", model.get("loss_warmup"))
    check_keys("model.loss_warmup", given_warmup, list(weights), what="loss term")
    steps_key = Key(0, int, "warm-up steps", minimum=0)
    resolved["loss_warmup"] = {term: check_value(f"model.loss_warmup.{term}", steps, steps_key)
                               for term, steps in given_warmup.items()}
    resolved.update(option_values)
    resolved["networks"] = _resolve_networks(model.get("networks", REQUIRED), cls, model_config(resolved, cls))
    return resolved


def _resolve_networks(value: Any, cls: type, model_cfg: ModelConfig) -> dict[str, Any]:
    path = "model.networks"
    kinds: dict[str, str] = dict(getattr(cls, "network_kinds", {}))
    required = list(cls.required_networks(model_cfg))
    if value is REQUIRED or value is None:
        raise RecipeError(path, f"is required: {cls.__name__} needs {', '.join(required) or 'networks'}",
                          hint="e.g. model.networks.G: {type: unet_256}")
    given = _mapping(path, value)
    check_keys(path, given, list(kinds), what="network")
    for name in required:
        if name not in given:
            raise RecipeError(_join(path, name), f"is required by model {model_cfg.type!r} "
                              f"(a {kinds.get(name, 'component')}); add {{type: <{kinds.get(name, 'name')}>, ...}}")
    derived = cls.derived_network_args(model_cfg)
    resolved: dict[str, Any] = {}
    for name in [n for n in kinds if n in given]:
        net_path = _join(path, name)
        spec = given[name]
        if isinstance(spec, str):
            spec = {"type": spec}
        spec = _mapping(net_path, spec)
        if "type" not in spec:
            raise RecipeError(_join(net_path, "type"), f"is required: which {kinds[name]} to use",
                              hint=f"see `ganzoo list {kinds[name]}`")
        entry = _lookup_component(_join(net_path, "type"), kinds[name], spec.pop("type"))
        resolved[name] = resolve_arguments(net_path, entry, spec, derived.get(name),
                                           derived_by=f"model {model_cfg.type!r}")
    # A network the configuration does not use (D2 with use_same_D) is checked above but not kept:
    # the resolved recipe shows what is built, and inheritance has no way to delete a key.
    return {name: spec for name, spec in resolved.items() if name in required}


def _check_epochs(train: dict[str, Any]) -> None:
    if train["max_steps"] is None and train["epochs"] + train["epochs_decay"] < 1:
        raise RecipeError("train.epochs", "train.epochs + train.epochs_decay is 0, so nothing would be trained",
                          hint="set train.epochs or train.max_steps")


def _check_eval_metrics(train: dict[str, Any]) -> None:
    """``train.eval_metrics`` names registered metrics: a typo fails now, not at the first evaluation."""
    names = train.get("eval_metrics")
    if not names:
        return
    import ganzoo.metrics  # noqa: F401  (registers the built-in metrics)
    from ganzoo.registry import list_components

    known = list_components("metric")["metric"]
    for i, name in enumerate(names):
        if name not in known:
            raise RecipeError(f"train.eval_metrics[{i}]", f"{_short(name)} is not a registered metric",
                              hint=did_you_mean(name, known) or f"metrics: {', '.join(known)}")


def _check_monitoring(recipe: dict[str, Any], cls: type) -> None:
    """``train.early_stop.watch`` and ``log.keep_best.metric`` name something the run will have: a
    registered metric (then evaluations must happen and include it) or, for early stopping, a loss the
    model declares (:meth:`~ganzoo.models.base.ModelSpec.loss_names`; undeclared: checked when training)."""
    from ganzoo.training.monitor import classify, registered_metrics

    train, log = recipe["train"], recipe["log"]
    watched = []
    if train.get("early_stop") is not None:
        watched.append(("train.early_stop.watch", train["early_stop"]["watch"], "train.early_stop.mode",
                        train["early_stop"]["mode"]))
    if log.get("keep_best") is not None:
        watched.append(("log.keep_best.metric", log["keep_best"]["metric"], None, None))
    for key, name, mode_key, mode in watched:
        target = classify(name)
        if not target.is_metric:
            if key == "log.keep_best.metric":
                known = registered_metrics()
                raise RecipeError(key, f"{_short(name)} is not a registered metric (<metric> or <metric>.<score>)",
                                  hint=did_you_mean(name.partition(".")[0], known) or f"metrics: {', '.join(known)}")
            names = cls.loss_names(recipe["model_config"]) if hasattr(cls, "loss_names") else None
            if names is not None and name not in names:
                raise RecipeError(key, f"{_short(name)} is neither a loss this {recipe['model']['type']} logs "
                                  f"({', '.join(names)}) nor a registered metric",
                                  hint=did_you_mean(name, [*names, *registered_metrics()])
                                  or "watch a logged loss, or <metric>[.<score>] with train.eval_every")
            continue
        if train.get("eval_every") is None:
            raise RecipeError(key, f"{_short(name)} is an evaluation score, but train.eval_every is null, so the run "
                              "never evaluates", hint="set train.eval_every (e.g. 500)")
        chosen = train.get("eval_metrics")
        if chosen is not None and target.metric not in chosen:
            raise RecipeError(key, f"metric {target.metric!r} is not in train.eval_metrics ({', '.join(chosen)})",
                              hint=f"add {target.metric} to train.eval_metrics")
        if mode_key is not None and mode is None:
            raise RecipeError(mode_key, f"is required when watching the metric score {_short(name)}: min or max",
                              hint="min when lower is better (fid, kid), max when higher is (accuracies, coverage)")


def _check_sizes(data: dict[str, Any]) -> None:
    if data["preprocess"] in schema.SCALE_THEN_CROP and data["crop_size"] > data["load_size"]:
        raise RecipeError("data.crop_size", f"{data['crop_size']} is larger than data.load_size "
                          f"{data['load_size']}, but {data['preprocess']} crops it from the scaled image",
                          hint=f"set data.load_size >= {data['crop_size']} or data.preprocess=crop")


def _check_augment(data: dict[str, Any]) -> None:
    """``data.augment``: ranges in order, and no ``data.cache`` of items that change at every load."""
    augment = data.get("augment")
    if not augment:
        return
    for name in ("scale", "ratio"):
        pair = augment.get(name)
        if pair is not None and pair[0] > pair[1]:
            raise RecipeError(f"data.augment.{name}", f"[{pair[0]}, {pair[1]}]: low is above high",
                              hint=f"write it as [{pair[1]}, {pair[0]}]")
    from ganzoo.data.transforms import Augment

    reason = Augment(augment).randomness()
    if reason and data.get("cache"):
        raise RecipeError("data.cache", f"is true, but items change at every load: {reason}",
                          hint="set data.cache=false, or turn data.augment off")


def network_input_size(data: DataConfig) -> tuple[str, int] | None:
    """The key that fixes the side of the images the networks see, and its value (None: unknown)."""
    mode = data.preprocess
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        return "data.crop_size", data.crop_size
    if mode == "scale_width":
        return "data.load_size", data.load_size
    if data.shapes is not None:  # "none" keeps the generated size, rounded as the preprocessing does
        m = schema.SIZE_MULTIPLE_FOR_NONE
        return "data.shapes.size", max(m, round(data.shapes.size / m) * m)
    return None


def build_meta_networks(recipe: Recipe | Mapping[str, Any]) -> dict[str, nn.Module]:
    """Build every network of a resolved recipe on the meta device (no memory, no weights)."""
    model = recipe.model.to_dict() if isinstance(recipe, Recipe) else recipe["model"]
    cls = _lookup_component("model.type", "model", model["type"]).factory
    kinds: dict[str, str] = dict(getattr(cls, "network_kinds", {}))
    networks: dict[str, nn.Module] = {}
    for name, spec in model["networks"].items():
        path = f"model.networks.{name}"
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        try:
            with torch.device("meta"):
                net = registry(kinds[name]).build(spec["type"], **kwargs)
            networks[name] = ensure_contract(kinds[name], spec["type"], net, where=path)
        except GanzooError as exc:
            raise RecipeError(path, exc.message, hint=exc.hint) from None
        except Exception as exc:  # a constructor refusing its arguments is a recipe problem
            raise RecipeError(path, f"{kinds[name]} {spec['type']!r} cannot be built with these arguments: "
                              f"{type(exc).__name__}: {_short(str(exc), 300)}") from None
    return networks


def _check_networks(recipe: dict[str, Any], networks: Mapping[str, nn.Module]) -> None:
    size = network_input_size(DataConfig.from_plain(recipe["data"]))
    specs = recipe["model"]["networks"]
    if size is not None:
        key, side = size
        for name, net in networks.items():
            multiple = int(getattr(net, "size_multiple", 1) or 1)
            if side % multiple:
                lower = max(multiple, side - side % multiple)
                raise RecipeError(key, f"{side} is not a multiple of {multiple}, which model.networks.{name} "
                                  f"({specs[name]['type']}) needs", hint=f"use {lower} or {lower + multiple}")


def _generator(recipe: Mapping[str, Any], cls: type, networks: Mapping[str, nn.Module]) -> str | None:
    kinds: dict[str, str] = getattr(cls, "network_kinds", {})
    return next((n for n, k in kinds.items() if k == "generator" and n in networks), None)


def _fill_channels(recipe: dict[str, Any], cls: type, networks: Mapping[str, nn.Module]) -> None:
    """data.input_nc/output_nc from the (first) generator; explicit values must agree with it."""
    name = _generator(recipe, cls, networks)
    if name is None:
        return
    spec, net, data = recipe["model"]["networks"][name], networks[name], recipe["data"]
    for key in ("input_nc", "output_nc"):
        channels = getattr(net, key, spec.get(key))
        if not isinstance(channels, int) or isinstance(channels, bool):
            continue
        if data[key] is None:
            data[key] = channels
        elif data[key] != channels:
            raise RecipeError(f"data.{key}", f"is {data[key]}, but model.networks.{name} ({spec['type']}) has "
                              f"{key} {channels}", hint=f"set model.networks.{name}.{key}={data[key]} "
                              f"or remove data.{key}")


def _with_source(error: RecipeError, source: str | None) -> RecipeError:
    if source is None or error.message.startswith(f"{source}: "):
        return error
    wrapped = RecipeError("", error.message, hint=error.hint, source=source)
    wrapped.key = error.key
    return wrapped


#: ``train`` keys of earlier versions and what replaced them. A user's recipe naming one is told;
#: a checkpoint's stored recipe (``retired="drop"``) loses them, since they never changed the maths.
RETIRED_TRAIN_KEYS = {
    "tuned_cpu_convs": "the CPU convolutions are the cpu_kernels accelerator plugin now: pip install "
                       "plugins/ganzoo-cpu-kernels and set train.accelerators=[cpu_kernels]",
    "reuse_freed_memory": "it is part of the cpu_kernels accelerator plugin (train.accelerators=[cpu_kernels])",
    "parallel_branches": "the discriminators are updated in turn, as in the official code",
}


def _retire_keys(raw: Mapping[str, Any], retired: str) -> Mapping[str, Any]:
    train = raw.get("train")
    if not isinstance(train, Mapping) or not any(k in train for k in RETIRED_TRAIN_KEYS):
        return raw
    if retired == "drop":
        return {**raw, "train": {k: v for k, v in train.items() if k not in RETIRED_TRAIN_KEYS}}
    name = next(k for k in train if k in RETIRED_TRAIN_KEYS)
    raise RecipeError(f"train.{name}", "was removed", hint=f"remove it; {RETIRED_TRAIN_KEYS[name]}")


def _resolve(raw: Mapping[str, Any], source: str | None, retired: str) -> tuple[Recipe, dict[str, nn.Module]]:
    if not isinstance(raw, Mapping):
        raise RecipeError("", f"a recipe is a mapping of keys, not a {type(raw).__name__}")
    if "base" in raw:
        raise RecipeError("base", "is followed by load_recipe; resolve_recipe needs the merged recipe")
    check_keys("", raw, list(schema.TOP))
    raw = _retire_keys(raw, retired)
    cls = model_spec(raw)
    tree = deep_merge(_nested(getattr(cls, "recipe_defaults", {})), raw)
    name = tree.get("name")
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(source).stem) if source else "recipe"
    if name in (".", ".."):
        raise RecipeError("name", f"{name!r} cannot name a run folder", hint="use letters, digits, _ . + -")
    recipe: dict[str, Any] = {
        "name": check_value("name", name, schema.TOP["name"]),
        "plugins": check_value("plugins", tree.get("plugins", []), schema.TOP["plugins"]),
        "model": _resolve_model(_mapping("model", tree["model"]), cls),
    }
    if "data" not in tree:
        raise RecipeError("data", "is required (at least data.root)", hint="e.g. data: {root: datasets/facades}")
    for section in ("data", "train", "log"):
        fields = schema.TOP[section].fields
        assert fields is not None
        recipe[section] = resolve_section(section, tree.get(section), fields)
    recipe["model_config"] = model_config(recipe["model"], cls)
    recipe["train"]["optimizers"] = _resolve_optimizer_overrides(recipe, cls)
    _check_sizes(recipe["data"])
    _check_augment(recipe["data"])
    _check_epochs(recipe["train"])
    _check_eval_metrics(recipe["train"])
    _check_monitoring(recipe, cls)
    networks = build_meta_networks(recipe)
    _check_networks(recipe, networks)
    _fill_channels(recipe, cls, networks)
    typed = Recipe(name=recipe["name"], plugins=tuple(recipe["plugins"]), model=model_config(recipe["model"], cls),
                   data=DataConfig.from_plain(recipe["data"]), train=TrainConfig.from_plain(recipe["train"]),
                   log=LogConfig.from_plain(recipe["log"]))
    cls.check_recipe(typed, networks)
    return typed, networks


def resolve_with_networks(raw: Mapping[str, Any], source: str | None = None, *, retired: str = "error"
                          ) -> tuple[Recipe, dict[str, nn.Module]]:
    """Resolve and validate ``raw``; also return its networks built on the meta device."""
    try:
        return _resolve(raw, source, retired)
    except RecipeError as error:
        raise _with_source(error, source) from None
    except RecursionError:
        raise RecipeError("", "is nested too deeply to be a recipe") from None


def resolve_recipe(raw: Mapping[str, Any] | Recipe, source: str | None = None, *, retired: str = "error") -> Recipe:
    """The fully resolved recipe (a frozen :class:`~ganzoo.recipe.schema.Recipe`): every default
    filled in, every value checked. A :class:`Recipe` is returned as it is.

    ``source`` (the recipe file) prefixes error messages and gives the default ``name``.
    ``retired="drop"`` silently drops keys earlier versions wrote (for recipes stored in checkpoints).
    Raises :class:`~ganzoo.errors.RecipeError` naming the key path of the first problem.
    """
    if isinstance(raw, Recipe):
        return raw
    return resolve_with_networks(raw, source, retired=retired)[0]


def count_parameters(net: nn.Module) -> int:
    """Number of parameters of a network (works on the meta device)."""
    return sum(p.numel() for p in net.parameters())


def network_summary(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """``{name: {"component": type, "kind": kind, "params": int}}`` for every network of a resolved recipe."""
    kinds: dict[str, str] = getattr(model_spec(recipe.to_dict()), "network_kinds", {})
    networks = build_meta_networks(recipe)
    return {
        name: {"component": recipe.model.networks[name]["type"], "kind": kinds[name],
               "params": count_parameters(net)}
        for name, net in networks.items()
    }
