"""PyTorch state_dict -> Flax variables: the one conversion mechanism.

A *mapping* says where each PyTorch module's tensors go: a function from a
torch module path ("layer1.0.conv1", the tensor name without its last
component) to a Flax module path ("layer1_0/conv1"), or `IGNORE` (a tensor
deliberately dropped, e.g. a classifier), or None (no rule: reported as
unused). Everything else is generic and lives here:

- the leaf: `weight` -> `kernel` (conv/linear), `scale` (norms) or `weight`
  (PReLU), `bias` -> `bias`, `running_mean` / `running_var` -> `batch_stats`
  `mean` / `var`; `num_batches_tracked` is dropped; any other name (a raw
  `nn.Parameter` such as `cls_token`) keeps its name, or is renamed by
  `Target(path, leaves={'cls_token': 'cls'})`;
- the layout: conv kernels (O, I/groups, *k) -> (*k, I/groups, O) (depthwise
  (O, 1, kh, kw) -> (kh, kw, 1, O) is the same rule); transposed-conv kernels
  (I, O, *k) -> (*k, I, O) when the rule says `Target(path, transposed=True)`
  (the shape cannot tell them apart when I == O); linear weights (O, I) ->
  (I, O), or, into a conv kernel, reshaped in torch's (C, *k) flatten order;
  a fused projection (`Target(path, split=('key', 'value'))`, smp's `kv`)
  is cut along its output axis into one tensor per named sub-module;
- checks: a converted tensor whose shape differs from the Flax variable's
  raises `ConversionError` naming both; every Flax variable no tensor filled
  and every tensor no variable took are listed by name (`Report`), and
  `strict=True` refuses to return a partial conversion.

Adding a mapping for a new family (one module per family in this package):

    # segjax/convert/mymodel.py
    from segjax.convert.core import IGNORE, register_mapping, rules

    @register_mapping("torchvision_mymodel", models=("mymodel",))
    def torchvision_mymodel():
        return rules(
            (r"features\\.(\\d+)\\.0", r"block\\1/conv"),      # regex on the module path
            (r"features\\.(\\d+)\\.1", r"block\\1/norm/bn"),   # -> flax module path
            (r"classifier(\\..*)?", IGNORE),
        )

then import it in `segjax/convert/__init__.py`. `models` are registered model
names (or `encoders=` registered encoder names; the CLI then converts into
`params['encoder']`). `prefixed()` reuses a mapping under a prefix (a
backbone inside a segmentation model) and `chain()` tries several in order.
A family whose tensors differ by more than a transpose (channels interleaved
in another order, one raw parameter holding several tables) wraps its
mapping with `with_prepare(mapping, prepare)`: `prepare(state_dict)` rewrites
those tensors into segjax's layout, under the same module paths, before the
rules apply (`segjax/convert/axial_resnet.py`).
Test it with `convert(..., strict=True)` on a randomly initialised reference.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from flax import traverse_util

from segjax import registry

IGNORE = "<ignore>"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a torch module goes: a Flax module path, plus layout details."""

    path: str
    transposed: bool = False      # a ConvTranspose weight, (I, O, *k)
    leaves: Mapping[str, str] | None = None  # torch leaf -> Flax leaf, for raw parameters
    # A fused projection (smp's `kv`, timm's `qkv`): the tensor is the concatenation along
    # its first (output) axis of equal parts, one per sub-module of `path` named here.
    split: tuple[str, ...] | None = None


MappingFn = Callable[[str], "str | Target | None"]

# torch leaf name -> candidate (collection, flax leaf) in order of preference.
LEAVES: dict[str, tuple[tuple[str, str], ...]] = {
    "weight": (("params", "kernel"), ("params", "scale"), ("params", "weight"),
               ("params", "embedding")),
    "bias": (("params", "bias"),),
    "running_mean": (("batch_stats", "mean"),),
    "running_var": (("batch_stats", "var"),),
}
DROPPED_LEAVES = ("num_batches_tracked",)
COLLECTIONS = ("params", "batch_stats")


class ConversionError(ValueError):
    """A torch tensor cannot become a Flax variable (shape mismatch, duplicates,
    or, with strict=True, unmapped variables / unused tensors)."""


# ----------------------------------------------------------------------------- mappings

def rules(*pairs: tuple[str, Any]) -> MappingFn:
    """A mapping from (regex, replacement) pairs; the first full match wins.

    A replacement is a template (`re.Match.expand` syntax, `\\1`), `IGNORE`,
    a `Target` whose `path` is a template, or a function of the match
    returning a path (for arithmetic on indices, e.g. 0-based -> 1-based).
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in pairs]

    def mapping(module: str):
        for pattern, replacement in compiled:
            match = pattern.fullmatch(module)
            if match is None:
                continue
            if replacement == IGNORE:
                return IGNORE
            if isinstance(replacement, Target):
                return dataclasses.replace(replacement, path=match.expand(replacement.path))
            if callable(replacement):
                return replacement(match)
            return match.expand(replacement)
        return None

    return mapping


def with_prepare(mapping: MappingFn, prepare: Callable[[dict], dict]) -> MappingFn:
    """`mapping`, with `prepare(state_dict) -> state_dict` applied before its rules.

    `prepare` rewrites the tensors it recognises (by name) and passes every
    other one through unchanged; `prefixed` and `chain` keep it.
    """

    def prepared(module: str):
        return mapping(module)

    prepared.prepare = prepare
    return prepared


def prepare_state(mapping: MappingFn, state_dict: Mapping[str, Any]) -> dict:
    """The state dict as `mapping`'s rules expect it (its `prepare`, if any, applied)."""
    prepare = getattr(mapping, "prepare", None)
    return dict(state_dict) if prepare is None else prepare(dict(state_dict))


def _keep_prepare(wrapper: MappingFn, *mappings: MappingFn) -> MappingFn:
    prepares = [m.prepare for m in mappings if getattr(m, "prepare", None) is not None]
    if prepares:
        def prepare(state_dict: dict) -> dict:
            for function in prepares:
                state_dict = function(state_dict)
            return state_dict

        wrapper.prepare = prepare
    return wrapper


def prefixed(torch_prefix: str, flax_prefix: str, mapping: MappingFn) -> MappingFn:
    """`mapping` applied under a torch prefix ('backbone.') and a Flax prefix ('encoder')."""

    def under(module: str):
        if not module.startswith(torch_prefix):
            return None
        target = mapping(module[len(torch_prefix):])
        if target is None or target == IGNORE or not flax_prefix:
            return target
        if isinstance(target, Target):
            return dataclasses.replace(target, path=_join(flax_prefix, target.path))
        return _join(flax_prefix, target)

    return _keep_prepare(under, mapping)


def chain(*mappings: MappingFn) -> MappingFn:
    """The first mapping that has a rule for a module wins."""

    def first(module: str):
        for mapping in mappings:
            target = mapping(module)
            if target is not None:
                return target
        return None

    return _keep_prepare(first, *mappings)


def _join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part)


@dataclasses.dataclass(frozen=True)
class RegisteredMapping:
    name: str
    factory: Callable[[], MappingFn]
    models: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    doc: str = ""


def register_mapping(name: str, *, models: Sequence[str] = (), encoders: Sequence[str] = ()):
    """Registers a function returning a mapping, for registered models/encoders.

    Mappings are entries of kind "mapping" in `segjax.registry`; every module
    of `segjax.convert` is imported on the first lookup, so a new mapping
    file registers by existing.
    """
    return registry.register("mapping", name, models=tuple(models), encoders=tuple(encoders))


def _as_mapping(entry: registry.Entry) -> RegisteredMapping:
    return RegisteredMapping(entry.name, entry.factory, entry.defaults["models"],
                             entry.defaults["encoders"], (entry.factory.__doc__ or "").strip())


def mapping_names() -> list[str]:
    return registry.names("mapping")


def get_mapping(name: str) -> RegisteredMapping:
    try:
        return _as_mapping(registry.get("mapping", name))
    except KeyError:
        raise KeyError(f"unknown conversion mapping {name!r}; registered mappings: "
                       f"{', '.join(mapping_names()) or '(none)'}") from None


def mappings_for(model: str | None = None, encoder: str | None = None
                 ) -> list[RegisteredMapping]:
    """Registered mappings for a model name or an encoder name."""
    found = [_as_mapping(registry.get("mapping", name)) for name in mapping_names()]
    return [m for m in found if (model is not None and model in m.models)
            or (encoder is not None and encoder in m.encoders)]


# ----------------------------------------------------------------------------- conversion

@dataclasses.dataclass
class Report:
    """What a conversion did, by name."""

    converted: dict[str, str] = dataclasses.field(default_factory=dict)  # torch -> flax
    ignored: list[str] = dataclasses.field(default_factory=list)         # IGNORE / dropped
    unused: dict[str, str] = dataclasses.field(default_factory=dict)     # torch -> why
    unmapped: list[str] = dataclasses.field(default_factory=list)        # flax paths

    @property
    def complete(self) -> bool:
        return not self.unused and not self.unmapped

    def summary(self, limit: int | None = None) -> str:
        def listing(items):
            items = list(items)
            shown = items if limit is None else items[:limit]
            more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
            return "".join(f"\n    {item}" for item in shown) + more

        lines = [f"converted {len(self.converted)} tensors, ignored {len(self.ignored)}"]
        if self.unused:
            lines.append(f"{len(self.unused)} torch tensors unused:" + listing(
                f"{name}: {why}" for name, why in self.unused.items()))
        if self.unmapped:
            lines.append(f"{len(self.unmapped)} flax variables not filled by any tensor:"
                         + listing(self.unmapped))
        return "\n".join(lines)


def _destination(flat, leaf: str, target: Target
                 ) -> tuple[tuple[str, ...] | None, list[str]]:
    """The Flax variable a torch leaf goes to, or None and the paths tried."""
    module = tuple(part for part in target.path.split("/") if part)
    if target.leaves and leaf in target.leaves:
        candidates = tuple((c, target.leaves[leaf]) for c in COLLECTIONS)
    else:
        candidates = LEAVES.get(leaf, tuple((c, leaf) for c in COLLECTIONS))
    tried = []
    for collection, name in candidates:
        path = (collection,) + module + (name,)
        if path in flat:
            return path, tried
        tried.append("/".join(path))
    return None, tried


def convert_tensor(tensor: np.ndarray, flax_shape: tuple[int, ...], leaf: str,
                   transposed: bool = False) -> np.ndarray:
    """A torch tensor in the layout of a Flax variable named `leaf` of `flax_shape`."""
    if leaf != "kernel":
        return tensor
    rank = tensor.ndim
    if rank >= 3:
        order = (tuple(range(2, rank)) + ((0, 1) if transposed else (1, 0)))
        return np.transpose(tensor, order)
    if rank == 2 and len(flax_shape) > 2:
        # A linear layer into a convolution (e.g. VGG's fc6 as a 7x7 conv): the torch
        # input axis is the flattening of (C, *k).
        *kernel, in_features, _ = flax_shape
        if tensor.shape[1] != in_features * int(np.prod(kernel)):
            return tensor  # left as is: the shape check names both shapes
        tensor = tensor.reshape((tensor.shape[0], in_features, *kernel))
        return np.transpose(tensor, tuple(range(2, tensor.ndim)) + (1, 0))
    if rank == 2:
        return tensor.T
    return tensor


def as_numpy(tensor) -> np.ndarray:
    """A torch tensor (bfloat16 widened to float32) or array as a numpy array."""
    if hasattr(tensor, "detach"):  # a torch tensor
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        tensor = tensor.numpy()
    return np.asarray(tensor)


def _parts(name: str, array: np.ndarray, target: Target):
    """(name, tensor, target) of each part of a fused tensor, or of the whole tensor."""
    if not target.split:
        return [(name, array, target)]
    count = len(target.split)
    if array.shape[0] % count:
        raise ConversionError(f"torch {name!r} {tuple(array.shape)}: its first axis does not "
                              f"split into {count} equal parts {target.split}")
    return [(f"{name}[{part}]", chunk,
             dataclasses.replace(target, path=_join(target.path, part), split=None))
            for part, chunk in zip(target.split, np.split(array, count, axis=0))]


def _fill(flat, filled, report: Report, name: str, array: np.ndarray, leaf: str,
          target: Target) -> None:
    """Writes one torch tensor into its Flax variable (checking shape and duplicates)."""
    destination, tried = _destination(flat, leaf, target)
    if destination is None:
        report.unused[name] = f"no flax variable at {' or '.join(tried)}"
        return
    flax_path = "/".join(destination)
    if destination in filled:
        raise ConversionError(f"torch tensors {filled[destination]!r} and {name!r} both map "
                              f"to flax variable {flax_path}")
    fresh = flat[destination]
    value = convert_tensor(array, tuple(fresh.shape), destination[-1], target.transposed)
    if tuple(value.shape) != tuple(fresh.shape):
        raise ConversionError(
            f"shape mismatch: torch {name!r} {tuple(array.shape)} (as {destination[-1]}: "
            f"{tuple(value.shape)}) vs flax {flax_path} {tuple(fresh.shape)}")
    flat[destination] = np.asarray(value, dtype=np.dtype(fresh.dtype))
    filled[destination] = name
    report.converted[name] = flax_path


def convert(state_dict: Mapping[str, Any], variables: Mapping[str, Any], mapping: MappingFn,
            *, scope: str | None = None, strict: bool = True) -> tuple[dict, Report]:
    """Fills `variables` (a Flax variables tree, used for names, shapes and
    dtypes) from a torch `state_dict` through `mapping`.

    Returns (new variables, report). Variables outside `scope` (a Flax module
    path such as 'encoder') are not expected to be filled. `strict=True`
    raises `ConversionError` listing every unused tensor and unfilled variable.
    A shape mismatch always raises.
    """
    flat = traverse_util.flatten_dict(dict(variables))
    filled: dict[tuple[str, ...], str] = {}
    report = Report()
    for name, tensor in prepare_state(mapping, state_dict).items():
        module_path, _, leaf = name.rpartition(".")
        if leaf in DROPPED_LEAVES:
            report.ignored.append(name)
            continue
        target = mapping(module_path)
        if target is None:
            report.unused[name] = f"no rule for torch module {module_path!r}"
            continue
        if target == IGNORE:
            report.ignored.append(name)
            continue
        target = target if isinstance(target, Target) else Target(target)
        array = as_numpy(tensor)
        for part_name, part, part_target in _parts(name, array, target):
            _fill(flat, filled, report, part_name, part, leaf, part_target)
    scope_parts = tuple(part for part in (scope or "").split("/") if part)
    report.unmapped = ["/".join(path) for path in flat
                       if path not in filled and path[1:1 + len(scope_parts)] == scope_parts]
    if strict and not report.complete:
        raise ConversionError("incomplete conversion (strict):\n" + report.summary())
    return traverse_util.unflatten_dict(flat), report


def coverage(mapping: MappingFn, state_dict: Mapping[str, Any]) -> int:
    """How many state_dict tensors `mapping` has a rule for (to choose between mappings)."""
    return sum(1 for name in prepare_state(mapping, state_dict)
               if mapping(name.rpartition(".")[0]) not in (None, IGNORE))
