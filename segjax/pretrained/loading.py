"""`load` (a preset or a spec -> model and variables), `init_from` (training), `configure`.

Names and specs (`resolve`):
- a preset name, `segformer_b0.nvidia_ade20k` (or `preset:segformer_b0.nvidia_ade20k`);
- `hf://org/repo@revision/path/file`: a Hub file (no `@revision`: the branch main);
- `https://host/path/file.pth#sha256=<hex>`: a URL, verified against the digest;
- a local path to a PyTorch checkpoint (.pth, .pt, .bin, .safetensors).
A spec whose file is a preset's (same repository and file, same URL, or a local
file with a preset's published file name) takes that preset's model, converter,
normalisation and classes; any other needs `model=` (a registry config) and
uses the registered mapping with rules for most of its tensors, or `converter=`.

`load(name_or_spec, num_classes=None)` returns a `Pretrained`: it unpacks as
`(model, variables)` and carries the config inference and export read (model,
data normalisation, class names, input size), the preset record
(`normalization` as plain data) and `predict(image)`.

Training: `config.model.init_from = "preset:<name>"` (or a spec) is applied by
`init_from(variables, config.model)` from `segjax.train.state`; with
`init_from_part = "encoder"` only `params['encoder']`/`batch_stats['encoder']`
are replaced. `configure(config)` (run by `segjax.main`; `use(config, name)`
in a config file does both) sets `config.data.mean/std` from the preset's
normalisation, so a run started from a preset trains, predicts and exports
with the input the weights expect, without the user repeating it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import ml_collections
import numpy as np

from segjax import checkpoints, evaluation, inference
from segjax.config import EvalOptions, base_config
from segjax.convert import core
from segjax.convert.io import load_state_dict
from segjax.models import registry
from segjax.pretrained import download, weights
from segjax.pretrained.presets import PRESETS, Normalization, Preset, Source, get

HF_SPEC = re.compile(r"hf://(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<file>.+)")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
PRESET_PREFIX = "preset:"


def _log_main(message: str) -> None:
    """Prints on the first process only (every process loads the same weights)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def is_spec(value: str) -> bool:
    """True when `config.model.init_from` names pretrained weights rather than a segjax
    checkpoint: 'preset:<name>', hf://, http(s):// or a PyTorch checkpoint file."""
    value = str(value or "")
    return (value.startswith((PRESET_PREFIX, "hf://", "https://", "http://"))
            or (value.endswith(TORCH_SUFFIXES) and Path(value).is_file()))


def parse_spec(spec: str) -> Source:
    """The Source a spec names (module docstring); a bare name is not a spec."""
    match = HF_SPEC.fullmatch(spec)
    if match:
        return Source("hub", match["repo"], match["file"], match["revision"] or "")
    if spec.startswith(("https://", "http://")):
        url, _, fragment = spec.partition("#")
        digest = fragment[len("sha256="):] if fragment.startswith("sha256=") else ""
        if fragment and not digest:
            raise ValueError(f"{spec}: the URL fragment must be #sha256=<hex digest>")
        return Source("url", url, sha256=digest.lower())
    if spec.startswith("hf://"):
        raise ValueError(f"{spec}: expected hf://org/repo[@revision]/file")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{spec} is neither a preset name nor an existing file "
                                f"(presets: python -m segjax.pretrained)")
    return Source("file", str(path))


def _matching_preset(source: Source) -> Preset | None:
    """The preset whose file `source` names, with `source`'s revision / digest / path."""
    for preset in PRESETS.values():
        theirs = preset.source
        if source.kind == "hub" and theirs.kind == "hub" and (
                theirs.location, theirs.filename) == (source.location, source.filename):
            revision = source.revision or theirs.revision
            sha = theirs.sha256 if revision == theirs.revision else ""
            return dataclasses.replace(preset, source=dataclasses.replace(
                theirs, revision=revision, sha256=sha))
        if source.kind == "url" and theirs.kind == "url" and theirs.location == source.location:
            return dataclasses.replace(preset, source=dataclasses.replace(
                theirs, sha256=source.sha256 or theirs.sha256))
        if source.kind == "file" and theirs.kind == "url" \
                and Path(source.location).name == theirs.file_name:
            return dataclasses.replace(preset, source=dataclasses.replace(
                source, sha256=theirs.sha256))
    return None


def match(name_or_spec: str) -> Preset | None:
    """The preset a name or spec means, or None for a spec that matches none."""
    value = str(name_or_spec)
    if value.startswith(PRESET_PREFIX) or value in PRESETS:
        return get(value)
    if "/" not in value and not Path(value).exists():
        return get(value)  # a mistyped name: the error lists the presets
    return _matching_preset(parse_spec(value))


def _choose_converter(model: Mapping[str, Any], state_dict, label: str) -> str:
    candidates = core.mappings_for(model=str(model.get("name")))
    if not candidates:
        raise ValueError(f"{label}: no conversion mapping is registered for model "
                         f"{model.get('name')!r}; pass converter= (one of "
                         f"{', '.join(core.mapping_names())})")
    scored = [(core.coverage(entry.factory(), state_dict), entry.name) for entry in candidates]
    return max(scored)[1]


def resolve(name_or_spec: str, *, model: Mapping[str, Any] | None = None,
            converter: str | None = None, normalization: Normalization | None = None
            ) -> Preset:
    """The preset a name or spec means; a spec matching none becomes an ad-hoc preset of
    `model` (required then) through `converter` (default: chosen when the file is read)."""
    preset = match(name_or_spec)
    if preset is not None:
        return preset
    if model is None:
        raise ValueError(f"{name_or_spec} matches no preset: pass model= (a registry config, "
                         "e.g. {'name': 'segformer_b0', 'num_classes': 150, 'style': 'hf'})")
    model = registry.to_dict(model)
    for field in registry.NON_ARCHITECTURE_FIELDS:
        model.pop(field, None)
    return Preset(name=str(name_or_spec), model=model, part="model",
                  source=parse_spec(str(name_or_spec)), converter=converter or "",
                  normalization=normalization, licence="", paper="", dataset="", metric="",
                  parameters=0, input_size=(512, 512),
                  num_classes=model.get("num_classes"))


def read_state_dict(preset: Preset, *, log: Callable[[str], None] = print
                    ) -> tuple[dict, Preset]:
    """(the preset's state dict as numpy arrays, the preset with its converter chosen)."""
    label = f"preset {preset.name}"
    path = download.fetch(preset.source, label=label, log=log)
    state_dict = load_state_dict(path)
    if not preset.converter:
        preset = dataclasses.replace(preset, converter=_choose_converter(
            preset.model, state_dict, label))
    return state_dict, preset


# ----------------------------------------------------------------------------- load


@dataclasses.dataclass(frozen=True)
class Pretrained(checkpoints.Checkpoint):
    """A loaded preset: `model, variables = pretrained` unpacks; `config` is what inference and
    export read (config.data.mean/std, class_names, crop), `preset` the table entry."""

    preset: Preset | None = None

    def __iter__(self):
        return iter((self.model, self.variables))

    @property
    def normalization(self) -> dict | None:
        """The preset's input normalisation as plain data (mean, std, value_range,
        channel_order), or None when unknown (an ad-hoc spec)."""
        norm = self.preset.normalization if self.preset else None
        return norm.as_dict() if norm else None

    @functools.cached_property
    def predict_fn(self):
        if self.preset is not None and self.preset.part == "encoder":
            raise ValueError(f"preset {self.preset.name} is an encoder (no classifier): "
                             "fine-tune it with init_from_part='encoder'")
        return evaluation.make_predict_fn(self.model, self.variables)

    def predict(self, image, *, probabilities: bool = False):
        """Class indices (H, W) of one RGB image (uint8 array or a file path), normalised as
        the preset expects; with `probabilities`, (labels, float16 probabilities)."""
        if isinstance(image, (str, Path)):
            from PIL import Image
            image = np.asarray(Image.open(image).convert("RGB"))
        labels, probs = inference.predict_labels(
            self.predict_fn, np.asarray(image), self.config.data,
            EvalOptions.from_config(self.config), int(self.config.model.num_classes),
            probabilities=probabilities)
        return (labels, probs) if probabilities else labels


def preset_config(preset: Preset, num_classes: int | None = None,
                  in_channels: int = 3) -> ml_collections.ConfigDict:
    """A config (segjax.config's schema) for inference with the preset: its model (with
    `num_classes`), normalisation, class names and input size."""
    config = base_config()
    model = dict(preset.model)
    if preset.part == "model":
        model["num_classes"] = int(num_classes or preset.num_classes or model["num_classes"])
    config.model = ml_collections.ConfigDict(model)
    config.model.init_from = f"{PRESET_PREFIX}{preset.name}" if preset.name in PRESETS else ""
    config.model.init_from_part = "all" if preset.part == "model" else "encoder"
    config.data.image_channels = int(in_channels)
    config.data.crop = tuple(preset.input_size)
    keep_classes = preset.class_names and (num_classes in (None, preset.num_classes))
    config.data.class_names = tuple(preset.class_names) if keep_classes else ()
    if preset.normalization is not None and in_channels == len(preset.normalization.mean):
        config.data.mean, config.data.std = preset.normalization.data_mean_std()
    return config


def _target_num_classes(preset: Preset, num_classes: int | None) -> int | None:
    if preset.part == "encoder":
        if num_classes is not None:
            raise ValueError(f"preset {preset.name} is an encoder: it has no classes "
                             "(num_classes applies to whole-model presets)")
        return None
    return int(num_classes or preset.num_classes or preset.model.get("num_classes"))


def load(name_or_spec: str, num_classes: int | None = None, *, in_channels: int = 3,
         model: Mapping[str, Any] | None = None, converter: str | None = None,
         normalization: Normalization | None = None, seed: int = 0,
         log: Callable[[str], None] = print) -> Pretrained:
    """The model and variables of a preset or spec (module docstring).

    `num_classes` other than the preset's re-initialises the class-dependent
    variables (one line names them); `in_channels` other than 3 adapts the
    first convolution (one line says so). The download is cached: a second
    load makes no request.
    """
    preset = resolve(name_or_spec, model=model, converter=converter,
                     normalization=normalization)
    label = f"preset {preset.name}"
    state_dict, preset = read_state_dict(preset, log=log)
    source = weights.convert_native(preset, state_dict, label)
    classes = _target_num_classes(preset, num_classes)
    config = preset_config(preset, classes, in_channels)
    model_config = registry.architecture(config.model)
    module = weights.build(model_config, preset.part)
    shape = (1, *weights.INIT_SIZE, int(in_channels))
    target = weights.flat(weights.abstract_variables(module, shape))
    if set(target) == set(source) and all(
            tuple(np.shape(source[p])) == tuple(target[p].shape) for p in target):
        variables = weights.unflat({p: np.asarray(source[p], np.dtype(target[p].dtype))
                                    for p in target})
    else:
        fresh = weights.flat(weights.init_variables(module, shape, seed))
        merged, _ = weights.merge(
            source, fresh, label=label, num_classes=(preset.num_classes, classes), log=log,
            class_paths=_once(lambda: _class_paths(model_config, preset.part, classes, shape)),
            input_paths=_once(lambda: _input_paths(module)))
        variables = weights.unflat(jax.device_get(merged))
    metadata = {"preset": preset.as_dict(), "part": preset.part}
    return Pretrained(module, variables, config, metadata, preset)


def _once(compute: Callable[[], set]) -> Callable[[], set]:
    return functools.cache(compute)


def _class_paths(model_config: Mapping[str, Any], part: str, classes: int | None,
                 shape) -> set:
    """Variables whose shape depends on the class count; none for an encoder."""
    if part == "encoder" or classes is None:
        return set()
    return weights.dependent_paths(
        lambda k: weights.build(dict(model_config, num_classes=k), part), classes, classes + 1,
        (shape, shape))


def _input_paths(module) -> set:
    """Variables whose shape depends on the input's channel count (3 vs 4 channels)."""
    size = weights.INIT_SIZE
    return weights.dependent_paths(lambda _: module, None, None,
                                   ((1, *size, 3), (1, *size, 4)))


# ----------------------------------------------------------------------------- training


def _reroot(paths: set, part: str) -> set:
    if part == "all":
        return paths
    return {(path[0],) + path[2:] for path in paths if len(path) > 2 and path[1] == "encoder"}


def _subtree(variables: Mapping, part: str) -> dict:
    if part == "all":
        return {c: dict(variables.get(c) or {}) for c in weights.COLLECTIONS}
    if "encoder" not in variables.get("params", {}):
        raise ValueError(f"config.model.init_from_part='encoder' but the model has no "
                         f"'encoder' parameters (top-level: {sorted(variables['params'])})")
    return {c: dict((variables.get(c) or {}).get("encoder") or {}) for c in weights.COLLECTIONS}


def init_from(variables: Mapping, model_config, *,
              log: Callable[[str], None] = _log_main) -> dict:
    """`variables` (a fresh initialisation of `model_config`'s model) with
    `model_config.init_from` applied: pretrained weights (a preset or spec, see `is_spec`)
    into all variables or the encoder (`init_from_part`), or a segjax checkpoint
    (`segjax.checkpoints.load_pretrained`)."""
    spec, part = str(model_config.init_from), str(model_config.get("init_from_part", "all"))
    if not is_spec(spec):
        return checkpoints.load_pretrained(dict(variables), spec, part)
    if part not in ("all", "encoder"):
        raise ValueError(f"config.model.init_from_part {part!r} is not one of: all, encoder")
    preset = resolve(spec, model=model_config)
    label = f"config.model.init_from={spec!r}"
    state_dict, preset = read_state_dict(preset, log=log)
    source = weights.select(weights.convert_native(preset, state_dict, label), part,
                            preset.part, label)
    target_tree = _subtree(variables, part)
    target = weights.flat(target_tree)
    model_fields = registry.architecture(model_config)
    classes = int(model_fields.get("num_classes", 0) or 0)
    size = weights.INIT_SIZE
    merged, unfilled = weights.merge(
        source, target, label=label, log=log,
        num_classes=(preset.num_classes if part == "all" else None, classes),
        class_paths=_once(lambda: _reroot(weights.dependent_paths(
            lambda k: registry.build(dict(model_fields, num_classes=k)), classes, classes + 1,
            ((1, *size, 3), (1, *size, 3))), part)),
        input_paths=_once(lambda: _reroot(_input_paths(registry.build(model_fields)), part)))
    kept = [weights.show(p) for p in unfilled]
    if part == "all" and kept:
        log(f"{label}: {len(kept)} variables the preset does not hold keep their "
            f"initialisation: {', '.join(kept[:8])}{' ...' if len(kept) > 8 else ''}")
    return _replace_subtree(variables, weights.unflat(merged), part)


def _replace_subtree(variables: Mapping, tree: Mapping, part: str) -> dict:
    result = {c: dict(variables.get(c) or {}) for c in weights.COLLECTIONS}
    for collection in weights.COLLECTIONS:
        new = tree.get(collection) or {}
        if part == "all":
            result[collection] = dict(new)
        elif new:
            result[collection]["encoder"] = new
    return result


def configure(config, *, log: Callable[[str], None] = _log_main) -> None:
    """Sets config.data.mean/std to the normalisation of the preset `config.model.init_from`
    names (a 'fixed'-normalised RGB config; others are left as they are)."""
    spec = str(config.model.get("init_from", "") or "")
    if not is_spec(spec):
        return
    try:
        preset = match(spec)
    except (FileNotFoundError, ValueError):
        return
    if preset is None or preset.normalization is None:
        return
    data = config.data
    if data.get("normalization", "fixed") != "fixed" \
            or int(data.image_channels) != len(preset.normalization.mean):
        return
    mean, std = preset.normalization.data_mean_std()
    if np.allclose(tuple(data.mean), mean) and np.allclose(tuple(data.std), std) \
            and len(tuple(data.mean)) == len(mean):
        return
    data.mean, data.std = tuple(mean), tuple(std)
    log(f"config.data.mean/std set to preset {preset.name}'s normalisation "
        f"(mean {_rounded(mean)}, std {_rounded(std)})")


def _rounded(values) -> tuple:
    return tuple(round(float(v), 4) for v in values)


def use(config, name: str, *, part: str | None = None) -> None:
    """Starts `config`'s training from preset `name` (its encoder for an encoder preset, or
    `part`) with the preset's normalisation: for config files."""
    preset = get(name)
    config.model.init_from = f"{PRESET_PREFIX}{preset.name}"
    config.model.init_from_part = part or ("encoder" if preset.part == "encoder" else "all")
    configure(config, log=lambda message: None)
