"""The component registry: interchangeable parts found by name.

One registry per kind (``generator``, ``encoder``, ``discriminator``, ...). A component is
registered with one decorator and built by name, the way timm's ``register_model`` /
``create_model`` work::

    @register("discriminator", "pixel")
    class PixelDiscriminator(nn.Module):
        \"\"\"1x1 PatchGAN (PixelGAN): classifies every pixel as real or fake.\"\"\"

    D = build("discriminator", "pixel", input_nc=6)

Presets (the official names such as ``unet_256``) are registered with :func:`register_preset`:
the base class with some arguments fixed. A name with a prefix (``timm:resnet18``) is handled by
a component registered with ``prefix=True``, which receives the rest of the name as
``model_name``.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ganzoo.errors import ComponentError, close_matches

KINDS: tuple[str, ...] = (
    "generator",
    "encoder",
    "discriminator",
    "gan_loss",
    "norm",
    "activation",
    "init",
    "scheduler",
    "model",
    "dataset",
    "metric",
    "accelerator",
)

F = TypeVar("F", bound=Callable[..., Any])

# Set by the plugin loader while it imports a plugin, so `ganzoo list` can say where a part came from.
_current_source: list[str] = []


@dataclass(frozen=True)
class Component:
    """A registered component: its kind, name, factory, one-line description and origin."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    source: str
    prefix: bool = False

    def signature(self) -> inspect.Signature:
        """The keyword arguments the factory accepts (fixed preset arguments excluded)."""
        return inspect.signature(self.factory)

    def defaults(self) -> dict[str, Any]:
        """Every keyword argument with a default, mapped to that default."""
        return {
            p.name: p.default
            for p in self.signature().parameters.values()
            if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }

    def required(self) -> list[str]:
        """Names of the keyword arguments that have no default."""
        return [
            p.name
            for p in self.signature().parameters.values()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]


class _Preset:
    """A factory with some keyword arguments fixed; its signature hides the fixed ones."""

    def __init__(self, base: Callable[..., Any], fixed: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.base = base
        self.fixed = fixed
        self.preset_defaults = defaults
        params = []
        for p in inspect.signature(base).parameters.values():
            if p.name in fixed:
                continue
            if p.name in defaults:
                p = p.replace(default=defaults[p.name])
            params.append(p)
        self.__signature__ = inspect.Signature(params)
        self.__doc__ = base.__doc__
        self.__module__ = base.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        merged = {**self.preset_defaults, **kwargs, **self.fixed}
        return self.base(*args, **merged)


def _first_line(doc: str | None) -> str:
    if not doc:
        return ""
    return inspect.cleandoc(doc).splitlines()[0].strip()


def _source_of(factory: Callable[..., Any]) -> str:
    if _current_source:
        return _current_source[-1]
    module = getattr(factory, "__module__", "") or ""
    top = module.split(".")[0]
    return "ganzoo" if top == "ganzoo" else (module or "?")


class Registry:
    """Components of one kind, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Component] = {}

    def add(self, name: str, factory: Callable[..., Any], *, description: str | None = None,
            override: bool = False, prefix: bool = False) -> Component:
        if not name or not isinstance(name, str):
            raise ComponentError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries and not override:
            existing = self._entries[name]
            raise ComponentError(
                f"{self.kind} {name!r} is already registered (by {existing.source}); "
                "pass override=True to replace it on purpose"
            )
        entry = Component(self.kind, name, factory, description or _first_line(factory.__doc__),
                          _source_of(factory), prefix)
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Component]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except ComponentError:
            return False
        return True

    def get(self, name: str) -> Component:
        """The component called ``name``; an error listing close matches when there is none."""
        if not isinstance(name, str):
            raise ComponentError(f"a {self.kind} name must be a string, got {type(name).__name__} {name!r}")
        if name in self._entries and not self._entries[name].prefix:
            return self._entries[name]
        head, sep, _ = name.partition(":")
        if sep and head in self._entries and self._entries[head].prefix:
            return self._entries[head]
        shown = [f"{n}:<name>" if e.prefix else n for n, e in sorted(self._entries.items())]
        matches = close_matches(name, shown)
        hint = ("did you mean " + " or ".join(repr(m) for m in matches) + "?") if matches else None
        raise ComponentError(
            f"unknown {self.kind} {name!r}; registered: {', '.join(shown) or '(none)'}", hint=hint
        )

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Build the component ``name`` with ``kwargs``, checking the arguments first."""
        entry = self.get(name)
        if entry.prefix:
            _, _, rest = name.partition(":")
            kwargs = {"model_name": rest, **kwargs}
        check_arguments(entry, kwargs)
        return entry.factory(**kwargs)


def check_arguments(entry: Component, kwargs: dict[str, Any]) -> None:
    """Raise a ComponentError naming the bad argument when ``kwargs`` do not fit ``entry``."""
    sig = entry.signature()
    params = sig.parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    accepted = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if not accepts_any:
        for key in kwargs:
            if key not in params:
                matches = close_matches(key, accepted)
                hint = ("did you mean " + " or ".join(repr(m) for m in matches) + "?") if matches else None
                raise ComponentError(
                    f"{entry.kind} {entry.name!r} has no argument {key!r}; it accepts: {', '.join(accepted)}",
                    hint=hint,
                )
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        missing = [n for n in entry.required() if n not in kwargs]
        detail = f"missing required argument(s) {', '.join(missing)}" if missing else str(exc)
        raise ComponentError(f"{entry.kind} {entry.name!r}: {detail}") from None


_REGISTRIES: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}


def registry(kind: str) -> Registry:
    """The registry of one kind."""
    try:
        return _REGISTRIES[kind]
    except KeyError:
        matches = close_matches(kind, _REGISTRIES)
        hint = ("did you mean " + " or ".join(repr(m) for m in matches) + "?") if matches else None
        raise ComponentError(f"unknown component kind {kind!r}; kinds: {', '.join(_REGISTRIES)}", hint=hint) from None


def register(kind: str, name: str | None = None, *, override: bool = False, prefix: bool = False,
             description: str | None = None) -> Callable[[F], F]:
    """Decorator registering a class or factory function as a ``kind`` component called ``name``.

    The description is the first line of the docstring unless given. A name already taken is an
    error unless ``override=True``. With ``prefix=True`` the component answers every name
    ``"<name>:<rest>"`` and receives ``model_name=<rest>``.
    """
    reg = registry(kind)

    def decorator(factory: F) -> F:
        reg.add(name or factory.__name__, factory, description=description, override=override, prefix=prefix)
        return factory

    return decorator


def register_preset(kind: str, name: str, base: Callable[..., Any], *, description: str,
                    fixed: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
                    override: bool = False) -> Component:
    """Register ``base`` under ``name`` with the ``fixed`` arguments set and other ``defaults`` changed."""
    preset = _Preset(base, dict(fixed or {}), dict(defaults or {}))
    return registry(kind).add(name, preset, description=description, override=override)


def build(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build the registered ``kind`` component ``name`` with keyword arguments ``kwargs``."""
    _ensure_builtins()
    return registry(kind).build(name, **kwargs)


def get_component(kind: str, name: str) -> Component:
    """The registry entry of a component (its factory, description, defaults and source)."""
    _ensure_builtins()
    return registry(kind).get(name)


def list_components(kind: str | None = None) -> dict[str, list[str]]:
    """Registered names by kind: ``{kind: [names]}`` for every kind, or for ``kind`` only."""
    _ensure_builtins()
    kinds = [kind] if kind is not None else list(_REGISTRIES)
    out: dict[str, list[str]] = {}
    for k in kinds:
        reg = registry(k)
        out[k] = [f"{e.name}:<model_name>" if e.prefix else e.name for e in reg.entries()]
    return out


@contextlib.contextmanager
def registering_from(source: str) -> Iterator[None]:
    """Attribute every registration inside the block to ``source`` (a plugin's name)."""
    _current_source.append(source)
    try:
        yield
    finally:
        _current_source.pop()


_builtins_loaded = False


def _ensure_builtins() -> None:
    """Import ganzoo's own component modules once, so their decorators have run."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from ganzoo import components  # noqa: F401  (imports every built-in family)
