"""Export a trained model's inference function with `jax.export`.

    python -m segjax.export --workdir runs/unet_isbi --output unet.jaxexport
    python -m segjax.export --checkpoint runs/x/checkpoints_best/variables --output m.jaxexport \\
        --input_shape 388,388,1 --batch 8 --platforms cpu,cuda

The artifact is the serialized StableHLO of `x -> model.apply(variables, x)["logits"]`
with the variables embedded as constants: a normalised float32 batch
(B, *spatial, C) maps to float32 logits. The batch size is symbolic by default
(any B) or fixed with --batch; the spatial shape is fixed (--input_shape, by
default the run's config.eval.tile or training crop). The config is the run's
own (or --config's) with `--config.<key>=value` overrides, as for
`segjax.predict` (`segjax.cli`). A JSON file next to it
(`<output>.json`) records the input shape, normalisation, class names and
output margin. `load_exported(path)` needs only `jax`: no segjax model code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def export_model(model, variables, input_shape: Sequence[int], *, batch: int | None = None,
                 platforms: Sequence[str] | None = None) -> jax.export.Exported:
    """`jax.export` of the logits of `model` for inputs (batch, *input_shape).

    `batch=None` exports a symbolic batch dimension.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if batch is None:
        (batch_dim,) = jax.export.symbolic_shape("b")
    else:
        if batch < 1:
            raise ValueError(f"export: batch must be >= 1, got {batch}")
        batch_dim = int(batch)

    def logits(x):
        return model.apply(variables, x, train=False)["logits"].astype(jnp.float32)

    spec = jax.ShapeDtypeStruct((batch_dim, *input_shape), jnp.float32)
    return jax.export.export(jax.jit(logits), platforms=tuple(platforms) if platforms else None)(
        spec)


def save_exported(exported: jax.export.Exported, path, metadata: dict | None = None) -> Path:
    """Writes the serialized function to `path` and its metadata to `path`.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(exported.serialize())
    info = dict(metadata or {})
    info.update(input_shape=[str(d) for d in exported.in_avals[0].shape],
                output_shape=[str(d) for d in exported.out_avals[0].shape],
                platforms=list(exported.platforms), format="jax.export")
    Path(f"{path}.json").write_text(json.dumps(info, indent=2))
    return path


def load_exported(path) -> tuple[Callable[[np.ndarray], jax.Array], dict]:
    """(function, metadata) of an exported artifact; the function maps a batch to logits."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception as error:  # deserialize raises several types on corrupt data
        raise ValueError(f"{path} is not a jax.export artifact: {error}") from error
    meta_path = Path(f"{path}.json")
    metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return exported.call, metadata


def _default_input_shape(config) -> tuple[int, ...]:
    from segjax.config import EvalOptions  # pylint: disable=import-outside-toplevel
    spatial = EvalOptions.from_config(config).tile or tuple(config.data.crop)
    return (*spatial, int(config.data.image_channels))


def define_flags(values) -> None:
    from absl import flags  # pylint: disable=import-outside-toplevel

    from segjax import cli  # pylint: disable=import-outside-toplevel
    cli.define_checkpoint_flags(values)
    flags.DEFINE_string("output", None, "Artifact path (metadata at <path>.json).",
                        flag_values=values)
    flags.DEFINE_list("input_shape", None, "Spatial size and channels, e.g. 572,572,1 "
                      "(default: config.eval.tile or config.data.crop, and the image channels).",
                      flag_values=values)
    flags.DEFINE_integer("batch", None, "Fixed batch size (default: symbolic).",
                         flag_values=values)
    flags.DEFINE_list("platforms", None, "e.g. cpu,cuda,tpu (default: the current backend).",
                      flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
    # segjax's model code is imported here only: an exported artifact loads without it.
    from segjax import checkpoints, cli, runtime  # pylint: disable=import-outside-toplevel
    values, config = cli.parse(argv, define_flags, doc=__doc__, program="python -m segjax.export",
                               default_config=cli.run_config)
    if not values.output:
        raise cli.UsageError("--output is required")
    runtime.configure(config)
    checkpoint = checkpoints.load(cli.checkpoint_path(values), config)
    input_shape = (tuple(int(v) for v in values.input_shape) if values.input_shape
                   else _default_input_shape(config))
    exported = export_model(checkpoint.model, checkpoint.variables, input_shape,
                            batch=values.batch, platforms=values.platforms)
    data = config.get("data", {})
    metadata = {"model": config.model.to_dict() if hasattr(config.model, "to_dict")
                else dict(config.model),
                "mean": list(data.get("mean", ())), "std": list(data.get("std", ())),
                "class_names": list(data.get("class_names", ())),
                "margin": [(i - o) // 2 for i, o in zip(
                    input_shape[:-1], exported.out_avals[0].shape[1:-1])]}
    save_exported(exported, values.output, metadata)
    print(f"exported {config.model.name} {tuple(exported.in_avals[0].shape)} -> "
          f"{tuple(exported.out_avals[0].shape)} to {values.output}")
    return 0


if __name__ == "__main__":
    from segjax import cli
    cli.run(main)
