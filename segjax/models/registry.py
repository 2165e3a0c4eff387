"""Building models from configs: `build(config.model)` over `segjax.registry`.

Encoders, decoders, heads and whole models register in the one registry
(`segjax.registry`, re-exported here for model files: `register`, `get`,
`names`, `build_part`, `Entry`). Every module under `segjax/models/` is
imported on the first model lookup, so a new architecture file registers by
existing.

`build(config.model)` picks the entry by `name` and passes every other field
as a keyword argument; a field that is itself a config with a `name`
(`encoder`, `decoder`) is built first. Unknown names raise an error that lists
the valid ones; unknown keyword arguments raise an error naming the field.
"""

from __future__ import annotations

from segjax.registry import (  # noqa: F401  (the model files' registry API)
    Entry, accepted_keywords, build_part, get, import_modules, names, register, to_dict)

# Fields of config.model that say where weights come from, not what the model is.
NON_ARCHITECTURE_FIELDS = ("init_from", "init_from_part", "conv_impl")
# Fields that describe the model but are read outside its constructor: how its logits are
# read (softmax, or a sigmoid per channel), applied by the loss and by inference.
READOUT_FIELDS = ("head_activation",)


def build(model_config, **overrides):
    """Builds the model described by `config.model` (name + keyword fields).

    `init_from`/`init_from_part` (weights to start training from) and
    `head_activation` (read by the loss and inference) are not model options;
    `conv_impl` in configs written before `config.runtime` existed is ignored
    here and applied by `segjax.runtime`. `dtype` goes to models that take it;
    every model computes in it anyway, because the train step and the predict
    function apply it (`segjax.models.policy`).
    """
    fields = to_dict(model_config)
    for field in NON_ARCHITECTURE_FIELDS + READOUT_FIELDS:
        fields.pop(field, None)
    if "dtype" in fields and "name" in fields:
        accepted = accepted_keywords(get("model", fields["name"]).factory)
        if accepted is not None and "dtype" not in accepted:
            fields.pop("dtype")
    return build_part("model", fields, **overrides)


def architecture(model_config) -> dict:
    """The fields of `config.model` that define the network (everything but weight sources)."""
    fields = to_dict(model_config)
    return {key: value for key, value in fields.items() if key not in NON_ARCHITECTURE_FIELDS}
