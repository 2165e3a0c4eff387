"""Registry of encoders, decoders and whole models, and `build(config)`.

Every architecture registers itself under a kind and a name:

    @register("model", "unet", paper="Ronneberger et al. 2015, arXiv:1505.04597",
              input_shape=(1, 572, 572, 1))
    class UNet(nn.Module): ...

Kinds are "encoder", "decoder", "head" and "model". A registered entry is any
callable returning a `flax.linen.Module` (a Module class or a factory
function). `paper` and `input_shape` are used by `python -m segjax.models`
to print each model's parameter count at its paper's default configuration.

`build(config.model)` builds a model from a config: `name` picks the entry,
every other field is passed as a keyword argument. A field that is itself a
config with a `name` (for example `encoder` or `decoder`) is built first
from the registry of the same kind, so a composite is described entirely by
its config. Unknown names raise an error that lists the valid ones; unknown
keyword arguments raise an error naming the field.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, Callable, Mapping

KINDS = ("encoder", "decoder", "head", "model")
# Modules imported on first lookup so that every built-in part is registered.
_BUILTIN_MODULES = ("segjax.models.all",)


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    paper: str = ""
    input_shape: tuple[int, ...] | None = None
    test_input_shape: tuple[int, ...] | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_builtins_loaded = False


def register(kind: str, name: str, *, paper: str = "", input_shape=None,
             test_input_shape=None, **defaults):
    """Decorator registering `factory` as `kind`/`name`.

    `input_shape` is the paper's input (N, *spatial, C) at which the default
    parameter count is reported; `test_input_shape` is the smallest convenient
    input for the build/forward/backward test of every registered model
    (default: `input_shape` with 64 for each spatial size).

    `defaults` are keyword arguments applied when the entry is built from the
    registry (a convenient way to register variants of one module, e.g.
    `resnet50` and `resnet101` over one ResNet class).
    """
    if kind not in KINDS:
        raise ValueError(f"register: kind {kind!r} is not one of {KINDS}")

    def decorator(factory):
        table = _REGISTRY[kind]
        if name in table and table[name].factory is not factory:
            raise ValueError(f"register: {kind} {name!r} is already registered by "
                             f"{table[name].factory.__module__}")
        table[name] = Entry(kind, name, factory, paper,
                            tuple(input_shape) if input_shape else None,
                            tuple(test_input_shape) if test_input_shape else None,
                            dict(defaults))
        return factory

    return decorator


def _load_builtins():
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def import_modules(modules) -> None:
    """Imports user modules (config.imports) so that their parts register."""
    for module in modules or ():
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"config.imports: cannot import {module!r}: {error}") from error


def names(kind: str) -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Entry:
    _load_builtins()
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    table = _REGISTRY[kind]
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; registered {kind}s: "
                       f"{', '.join(sorted(table)) or '(none)'}")
    return table[name]


def _to_dict(config) -> dict:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dict(config)


def _accepted_keywords(factory) -> set[str] | None:
    """Keyword names `factory` accepts, or None when it takes **kwargs."""
    if inspect.isclass(factory) and dataclasses.is_dataclass(factory):
        return {f.name for f in dataclasses.fields(factory) if f.init} - {"parent", "name"}
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def build_part(kind: str, config, **overrides):
    """Builds one registered part from a mapping with a `name` field."""
    fields = {**_to_dict(config), **overrides}
    if "name" not in fields:
        raise KeyError(f"{kind} config needs a 'name' field; registered {kind}s: "
                       f"{', '.join(names(kind))}")
    entry = get(kind, fields.pop("name"))
    kwargs = {**entry.defaults, **fields}
    for key, value in list(kwargs.items()):
        if key in ("encoder", "decoder") and isinstance(value, Mapping) \
                and "name" in value:
            kwargs[key] = build_part(key, value)
        elif hasattr(value, "to_dict"):
            kwargs[key] = value.to_dict()
    accepted = _accepted_keywords(entry.factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(f"{kind} {entry.name!r} has no option(s) {unknown}; "
                            f"valid options: {', '.join(sorted(accepted))}")
    return entry.factory(**kwargs)


def build(model_config, **overrides):
    """Builds the model described by `config.model` (name + keyword fields).

    `init_from`/`init_from_part` (a checkpoint to start training from) and
    `conv_impl` (the convolution formulation) are read by the train loop and are
    not model options.
    """
    fields = _to_dict(model_config)
    for training_only in ("init_from", "init_from_part", "conv_impl"):
        fields.pop(training_only, None)
    return build_part("model", fields, **overrides)
