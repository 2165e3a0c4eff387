"""`python -m segjax.convert`: a PyTorch checkpoint -> a segjax (Orbax) variables checkpoint.

    python -m segjax.convert --checkpoint resnet50.pth \
        --config configs/deeplabv3plus_camvid.py --output weights/deeplabv3plus
    python -m segjax.convert --checkpoint model.safetensors --config configs/X.py:smoke \
        --output weights/resnet18 --part encoder --mapping torchvision_resnet \
        --config.runtime.conv_impl=native

Builds the model that the config describes (`config.model`), initialises it
at the config's crop size, fills it from the checkpoint through a registered
mapping (`segjax.convert.core`) and writes the variables with
`segjax.checkpoints.save_variables` (metadata: the model config, the
checkpoint, the mapping, what was left unfilled). `config.model.init_from`
then starts training from it.

Which variables: a mapping registered for `config.model.name` converts the
whole model; otherwise a mapping registered for the encoder
(`config.model.encoder.name`) fills `params['encoder']` and the rest keeps
its fresh initialisation (train with `init_from_part='encoder'`).
`--part encoder` builds and writes the encoder alone. Several candidate
mappings: the one with rules for most tensors wins (or name it: --mapping).
By default a tensor without a destination, or a variable in scope left
unfilled, is an error listing them by name; `--nostrict` writes anyway.
An --output that exists and is not a variables checkpoint (a previous
conversion's, which is replaced) is refused unless `--overwrite`.
Flags are absl flags and `--config` an ml_collections config file with
`--config.<key>=value` overrides, as for training (`segjax.cli`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
from absl import flags

from segjax import cli, runtime
from segjax.checkpoints import check_replaceable, save_variables
from segjax.convert import core
from segjax.convert.io import load_state_dict
from segjax.models import registry


def _name(config) -> str | None:
    return config.get("name") if config is not None and hasattr(config, "get") else None


def choose_mapping(state_dict, model_config, part: str, mapping_name: str | None):
    """(mapping function, its name, scope) for a model config and a state dict."""
    model_name = _name(model_config)
    encoder_name = _name(model_config.get("encoder"))
    if mapping_name:
        entry = core.get_mapping(mapping_name)
        by_encoder = part == "encoder" or (model_name not in entry.models
                                           and encoder_name in entry.encoders)
        candidates = [entry]
    else:
        candidates = [] if part == "encoder" else core.mappings_for(model=model_name)
        by_encoder = not candidates
        if by_encoder:
            candidates = core.mappings_for(encoder=encoder_name)
        if not candidates:
            raise KeyError(f"no conversion mapping registered for model {model_name!r} or "
                           f"encoder {encoder_name!r}; registered: "
                           f"{', '.join(core.mapping_names())} (name one with --mapping)")
    scored = [(core.coverage(entry.factory(), state_dict), entry) for entry in candidates]
    _, entry = max(scored, key=lambda pair: pair[0])
    mapping = entry.factory()
    if by_encoder:
        return core.prefixed("", "encoder", mapping), entry.name, "encoder"
    return mapping, entry.name, None


def build_module(model_config, part: str):
    if part == "encoder":
        return registry.build_part("encoder", model_config["encoder"])
    return registry.build(model_config)


def _nest(variables, part: str) -> dict:
    variables = dict(variables)
    if part == "encoder":
        return {collection: {"encoder": tree} for collection, tree in variables.items()}
    return variables


def convert_module(state_dict, module, part: str, mapping, scope, strict: bool, input_shape):
    """Converts into `module`'s variables; initialises it only if something stays unfilled."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    init = lambda v: module.init(runtime.key(0), v, train=False)
    shapes = _nest(jax.eval_shape(init, x), part)
    converted, report = core.convert(state_dict, shapes, mapping, scope=scope, strict=strict)
    leaves = jax.tree_util.tree_leaves(converted)
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
        fresh = _nest(jax.jit(init)(jnp.zeros(input_shape, jnp.float32)), part)
        converted = jax.tree_util.tree_map(
            lambda new, initial: jax.device_get(initial)
            if isinstance(new, jax.ShapeDtypeStruct) else new, converted, fresh)
    return converted, report


def output_file(output: str) -> Path:
    """The variables checkpoint directory the converted weights are written to."""
    return Path(output)


def run(checkpoint: str, config, output: str, *, part: str = "all",
        mapping_name: str | None = None, strict: bool = True, input_size=None,
        verbose: bool = True, config_source: str = "", overwrite: bool = False) -> Path:
    """Converts `checkpoint` into the model `config.model` describes and writes it to `output`
    (`config.runtime` applied); `config_source` (e.g. 'configs/X.py:arg') goes to the metadata.
    An `output` that is neither absent, empty nor a variables checkpoint is replaced only
    with `overwrite`."""
    if part not in ("all", "encoder"):
        raise ValueError(f"--part must be 'all' or 'encoder', got {part!r}")
    check_replaceable(output_file(output), overwrite=overwrite)
    runtime.configure(config)
    registry.import_modules(config.get("imports", ()))
    state_dict = load_state_dict(checkpoint)
    mapping, name, scope = choose_mapping(state_dict, config.model, part, mapping_name)
    size = tuple(input_size or config.data.crop)
    module = build_module(config.model, part)
    converted, report = convert_module(state_dict, module, part, mapping, scope, strict,
                                       (1, *size, int(config.data.image_channels)))
    if verbose:
        print(f"mapping {name!r} (scope: {scope or 'whole model'}): {report.summary(limit=20)}")
    metadata = {
        "model": config.model.to_dict(),
        "imports": list(config.get("imports", ())),
        "source": {"checkpoint": str(checkpoint), "config": config_source, "mapping": name,
                   "part": part, "scope": scope or "",
                   "converted": len(report.converted),
                   "unused": sorted(report.unused), "unmapped": report.unmapped},
    }
    path = save_variables(output_file(output), converted,
                          json.loads(json.dumps(metadata, default=str)), overwrite=overwrite)
    if verbose:
        print(f"wrote {path}")
    return path


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("checkpoint", None, ".pth/.pt/.bin or .safetensors", flag_values=values)
    flags.DEFINE_string("output", None, "The Orbax variables checkpoint directory to write.",
                        flag_values=values)
    flags.DEFINE_enum("part", "all", ("all", "encoder"), "Convert the whole model or the "
                      "encoder alone.", flag_values=values)
    flags.DEFINE_string("mapping", None, "A registered mapping (default: chosen by the "
                        "config's model).", flag_values=values)
    flags.DEFINE_bool("strict", True, "Refuse unused tensors / unfilled variables "
                      "(--nostrict writes anyway).", flag_values=values)
    flags.DEFINE_bool("overwrite", False, "Replace --output even when it is not a variables "
                      "checkpoint (its files are deleted).", flag_values=values)
    flags.DEFINE_list("input_size", None, "H,W to initialise the model at (default: "
                      "config.data.crop).", flag_values=values)


def _config_source(argv: Sequence[str]) -> str:
    """The --config value of a command line (for the metadata)."""
    for index, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    values, config = cli.parse(argv, define_flags, doc=__doc__,
                               program="python -m segjax.convert")
    if not values.checkpoint or not values.output:
        raise cli.UsageError("--checkpoint and --output are required")
    size = tuple(int(v) for v in values.input_size) if values.input_size else None
    run(values.checkpoint, config, values.output, part=values.part, mapping_name=values.mapping,
        strict=values.strict, input_size=size, config_source=_config_source(argv),
        overwrite=values.overwrite)
    return 0


if __name__ == "__main__":
    cli.run(main)
