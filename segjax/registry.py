"""The one registry of segjax's extension points: models and their parts, losses, data, optimisers.

Every pluggable part registers itself under a kind and a name:

    @register("model", "unet", paper="Ronneberger et al. 2015, arXiv:1505.04597",
              input_shape=(1, 572, 572, 1))
    class UNet(nn.Module): ...

    @register("loss", "focal")
    def focal(outputs, batch, *, num_classes, ignore_index, config): ...

Kinds and what an entry is:

    encoder, decoder, head, model   a callable returning a `flax.linen.Module`
    loss        a loss term: (outputs, batch, *, num_classes, ignore_index, config) -> scalar
                (see `segjax.losses`)
    source      a data source factory: (data_config, split) -> random-access source
                (see `segjax.data.sources`)
    optimizer   (optim_config, schedule) -> optax.GradientTransformation (see `segjax.optim`)
    mapping     a PyTorch state-dict -> Flax variables mapping (see `segjax.convert.core`)

Built-in parts are found by discovery, not by a hand-kept list: the first
lookup of a kind imports every module of the packages that hold that kind's
built-ins (`BUILTIN_PACKAGES`), so a new file under `segjax/models/` is
registered by existing. Parts outside segjax (a new paper in one file) are
registered by the modules that `config.imports` names (`import_modules`).
Unknown names raise an error listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any, Callable, Iterable, Mapping

MODEL_KINDS = ("encoder", "decoder", "head", "model")
KINDS = MODEL_KINDS + ("loss", "source", "optimizer", "mapping")

# Where each kind's built-in entries live; every module of these packages is
# imported on the kind's first lookup.
BUILTIN_PACKAGES = {
    **{kind: ("segjax.models",) for kind in MODEL_KINDS},
    "loss": ("segjax.losses", "segjax.panoptic.losses"),
    "source": ("segjax.data.sources", "segjax.data.panoptic", "segjax.data.volume_sources",
               "segjax.data.released"),
    "optimizer": ("segjax.optim",),
    "mapping": ("segjax.convert",),
}


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
_discovered: set[str] = set()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def register(kind: str, name: str, *, paper: str = "", input_shape=None,
             test_input_shape=None, **defaults):
    """Decorator registering `factory` as `kind`/`name`.

    For models: `input_shape` is the paper's input (N, *spatial, C) at which
    `python -m segjax.models` reports the default parameter count;
    `test_input_shape` is the smallest convenient input for the
    build/forward/backward test of every registered model (default:
    `input_shape` with 64 for each spatial size). `defaults` are keyword
    arguments applied when the entry is built from the registry (variants of
    one module, e.g. `resnet50` and `resnet101` over one ResNet class).

    A second factory under a taken name is an error, unless it is the same
    definition made again (same module and qualified name: a notebook cell
    run twice, a reloaded module), which replaces the first.
    """
    _check_kind(kind)

    def decorator(factory):
        table = _REGISTRY[kind]
        if name in table and not _same_definition(table[name].factory, factory):
            raise ValueError(f"register: {kind} {name!r} is already registered by "
                             f"{table[name].factory.__module__}")
        table[name] = Entry(kind, name, factory, paper,
                            tuple(input_shape) if input_shape else None,
                            tuple(test_input_shape) if test_input_shape else None,
                            dict(defaults))
        return factory

    return decorator


def _same_definition(registered, factory) -> bool:
    """True when `factory` is `registered` or a re-execution of its definition."""
    def origin(value):
        return (getattr(value, "__module__", None), getattr(value, "__qualname__", None))
    return factory is registered or (origin(factory) == origin(registered)
                                     and "<lambda>" not in origin(factory)[1])


def _submodules(package_name: str) -> Iterable[str]:
    package = importlib.import_module(package_name)
    yield package_name
    if hasattr(package, "__path__"):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if not info.name.rsplit(".", 1)[-1].startswith("__"):
                yield info.name


def discover(kind: str) -> None:
    """Imports every module of the packages holding `kind`'s built-ins (once)."""
    _check_kind(kind)
    for package in BUILTIN_PACKAGES[kind]:
        if package in _discovered:
            continue
        _discovered.add(package)
        for module in list(_submodules(package)):
            importlib.import_module(module)


def import_modules(modules) -> None:
    """Imports user modules (config.imports) so that their parts register."""
    for module in modules or ():
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"config.imports: cannot import {module!r}: {error}") from error


def names(kind: str) -> list[str]:
    discover(kind)
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Entry:
    discover(kind)
    table = _REGISTRY[kind]
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; registered {kind}s: "
                       f"{', '.join(sorted(table)) or '(none)'}")
    return table[name]


def lookup(kind: str, name: str, field: str) -> Callable[..., Any]:
    """The factory of `kind`/`name`, or a ValueError naming the config `field` and valid names."""
    try:
        return get(kind, name).factory
    except KeyError:
        raise ValueError(f"{field}={name!r} is not a registered {kind}; valid: "
                         f"{', '.join(names(kind))} (new ones register through "
                         "config.imports)") from None


def to_dict(config) -> dict:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dict(config)


def accepted_keywords(factory) -> set[str] | None:
    """Keyword names `factory` accepts, or None when it takes **kwargs."""
    if inspect.isclass(factory) and dataclasses.is_dataclass(factory):
        return {f.name for f in dataclasses.fields(factory) if f.init} - {"parent", "name"}
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def build_part(kind: str, config, **overrides):
    """Builds one registered model part from a mapping with a `name` field.

    A field that is itself a mapping with a `name` (`encoder`, `decoder`) is
    built first from the registry of the same kind, so a composite is
    described entirely by its config; unknown keyword arguments raise an
    error naming the field.
    """
    fields = {**to_dict(config), **overrides}
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
    accepted = accepted_keywords(entry.factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(f"{kind} {entry.name!r} has no option(s) {unknown}; "
                            f"valid options: {', '.join(sorted(accepted))}")
    return entry.factory(**kwargs)
