"""From a PyTorch state dict to the variables of the model being built or trained.

Two steps, so that every preset loads into any model its tensors fit:

1. `convert_native`: the state dict is converted (`segjax.convert.core.convert`,
   the preset's registered mapping) into the model the preset describes, at its
   own class count and 3 input channels. Every tensor must find its variable
   and every variable must be filled, except those the preset lists as
   `fresh` (e.g. DPT's reassembly on an ImageNet ViT).
2. `merge`: those tensors replace the variables of the target (a whole model,
   or its `encoder` subtree). Equal shapes are copied. Where shapes differ:
   - class-dependent variables (the classifier, auxiliary and deep-supervision
     heads) keep the target's fresh initialisation. Which they are is not a
     per-model list: they are the variables whose shape changes when the
     target model is built with one more class (`dependent_paths`), so the
     rule holds for any head naming; one line names them;
   - input-dependent kernels (the first convolution, a patch embedding: the
     variables whose shape changes with the input's channel count) are adapted
     from the RGB kernel by `adapt_input_kernel`; one line says so;
   - any other difference is an error naming the variable and both shapes.
   A variable of the checkpoint that the target lacks is an error too.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from segjax import runtime
from segjax.convert import core
from segjax.models import registry
from segjax.pretrained.presets import Preset

Path_ = tuple[str, ...]          # (collection, module, ..., leaf)
COLLECTIONS = ("params", "batch_stats")
INIT_SIZE = (64, 64)             # parameter shapes do not depend on it


class PretrainedError(ValueError):
    """A checkpoint does not fit the model it is loaded into; the message names the tensor."""


def build(model_config: Mapping[str, Any], part: str):
    """The module of a registry config: a whole model, or an encoder alone."""
    if part == "encoder":
        return registry.build_part("encoder", dict(model_config))
    return registry.build(dict(model_config))


def abstract_variables(module, input_shape) -> dict:
    """`module`'s variables as ShapeDtypeStructs ('params' and 'batch_stats')."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    tree = jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v, train=False), x)
    return {c: dict(tree[c]) for c in COLLECTIONS if c in tree}


def init_variables(module, input_shape, seed: int = 0) -> dict:
    """`module`'s freshly initialised variables (one compiled program)."""
    init = lambda key: module.init(key, jnp.zeros(input_shape, jnp.float32), train=False)
    tree = jax.jit(init)(runtime.key(seed))
    return {c: dict(tree[c]) for c in COLLECTIONS if c in tree}


def flat(tree: Mapping) -> dict[Path_, Any]:
    return traverse_util.flatten_dict(dict(tree)) if tree else {}


def unflat(entries: Mapping[Path_, Any]) -> dict:
    return traverse_util.unflatten_dict(dict(entries)) if entries else {}


def show(path: Path_) -> str:
    return "/".join(path)


def _is_fresh(path: str, patterns: Iterable[str]) -> bool:
    module_path = path.split("/", 1)[1] if "/" in path else path
    return any(re.fullmatch(pattern, module_path) for pattern in patterns)


def convert_native(preset: Preset, state_dict: Mapping[str, Any], label: str
                   ) -> dict[Path_, np.ndarray]:
    """The state dict in the variables of `preset.model` (flat; `fresh` ones left out)."""
    module = build(preset.model, preset.part)
    shapes = abstract_variables(module, (1, *INIT_SIZE, 3))
    mapping = core.get_mapping(preset.converter).factory()
    try:
        converted, report = core.convert(state_dict, shapes, mapping, strict=False)
    except core.ConversionError as error:
        raise PretrainedError(f"{label}: {' '.join(str(error).split())}") from None
    if report.unused:
        names = sorted(report.unused)
        raise PretrainedError(
            f"{label}: {len(names)} checkpoint tensors have no variable in "
            f"{preset.model_name} through {preset.converter!r} (e.g. {', '.join(names[:4])}): "
            "the file does not have the layout this preset expects")
    missing = [path for path in report.unmapped if not _is_fresh(path, preset.fresh)]
    if missing:
        raise PretrainedError(
            f"{label}: the checkpoint fills no value for {len(missing)} variables of "
            f"{preset.model_name} (e.g. {', '.join(missing[:4])})")
    return {path: leaf for path, leaf in flat(converted).items()
            if not isinstance(leaf, jax.ShapeDtypeStruct)}


def select(entries: Mapping[Path_, Any], part: str, source_part: str, label: str
           ) -> dict[Path_, Any]:
    """The entries that go into the target's `part` ('all' | 'encoder'), keyed as there:
    an encoder preset's entries as they are; a whole model's under ('encoder', ...)."""
    if part == "all":
        if source_part == "encoder":
            raise PretrainedError(f"{label} holds an encoder only: load it with "
                                  "init_from_part='encoder' (or into a model's encoder)")
        return dict(entries)
    if source_part == "encoder":
        return dict(entries)
    chosen = {(path[0],) + path[2:]: value for path, value in entries.items()
              if len(path) > 2 and path[1] == "encoder"}
    if not chosen:
        raise PretrainedError(f"{label} has no 'encoder' variables to load into an encoder")
    return chosen


def dependent_paths(make_module: Callable[[Any], Any], first, second, input_shapes
                    ) -> set[Path_]:
    """Paths whose shape differs between `make_module(first)` at `input_shapes[0]` and
    `make_module(second)` at `input_shapes[1]` (what depends on a class or channel count)."""
    a = flat(abstract_variables(make_module(first), input_shapes[0]))
    b = flat(abstract_variables(make_module(second), input_shapes[1]))
    return {path for path in a if path in b and a[path].shape != b[path].shape}


def adapt_input_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A convolution kernel (*k, C_in, C_out) for `channels` inputs from one for C_in (RGB).

    timm's rule (`adapt_input_conv`): one channel gets the sum of the RGB
    kernels, so a grey image equal in all channels gives the same response;
    otherwise the kernels are repeated cyclically to `channels` and scaled by
    C_in / channels, which keeps the response's scale (exactly that response
    to an image whose channels are equal when `channels` is a multiple of C_in).
    """
    kernel = np.asarray(kernel)
    source = kernel.shape[-2]
    if channels == 1:
        return kernel.sum(axis=-2, keepdims=True)
    repeats = math.ceil(channels / source)
    tiled = np.concatenate([kernel] * repeats, axis=-2)[..., :channels, :]
    return (tiled * (source / channels)).astype(kernel.dtype)


def merge(source: Mapping[Path_, np.ndarray], target: Mapping[Path_, Any], *, label: str,
          class_paths: Callable[[], set[Path_]], input_paths: Callable[[], set[Path_]],
          num_classes: tuple[int | None, int | None] = (None, None),
          log: Callable[[str], None] = print) -> tuple[dict[Path_, Any], list[Path_]]:
    """`target` (flat) with `source`'s values (module docstring); also the target paths the
    source did not fill. `class_paths`/`input_paths` are computed only when shapes differ."""
    missing = [path for path in source if path not in target]
    if missing:
        raise PretrainedError(
            f"{label}: {show(missing[0])} {tuple(np.shape(source[missing[0]]))} is in the "
            f"checkpoint but not in the model ({len(missing)} such variables)")
    merged = dict(target)
    reinitialised, adapted = [], []
    for path, value in source.items():
        fresh = target[path]
        if tuple(np.shape(value)) == tuple(fresh.shape):
            merged[path] = np.asarray(value, dtype=np.dtype(fresh.dtype))
        elif path in class_paths():
            reinitialised.append(path)
        elif path in input_paths() and _only_input_axis_differs(value, fresh):
            merged[path] = adapt_input_kernel(value, fresh.shape[-2]).astype(fresh.dtype)
            adapted.append((path, np.shape(value)[-2], fresh.shape[-2]))
        else:
            raise PretrainedError(f"{label}: {show(path)}: the checkpoint has shape "
                                  f"{tuple(np.shape(value))}, the model {tuple(fresh.shape)}")
    if reinitialised:
        had, wants = num_classes
        counts = f" ({wants} classes; the checkpoint has {had})" if had and wants else ""
        log(f"{label}: re-initialised the class-dependent variables{counts}: "
            f"{', '.join(show(p) for p in reinitialised)}")
    for path, had, wants in adapted:
        log(f"{label}: {show(path)} adapted from {had} to {wants} input channels (the RGB "
            f"kernels {'summed' if wants == 1 else f'repeated and scaled by {had}/{wants}'}, "
            "as timm's adapt_input_conv)")
    unfilled = [path for path in target if path not in source]
    return merged, unfilled


def _only_input_axis_differs(value, fresh) -> bool:
    a, b = tuple(np.shape(value)), tuple(fresh.shape)
    return len(a) == len(b) >= 3 and a[:-2] == b[:-2] and a[-1] == b[-1]
