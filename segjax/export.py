"""Export a trained model's inference function with `jax.export`.

    python -m segjax.export --workdir runs/unet_isbi --output unet.jaxexport
    python -m segjax.export --checkpoint runs/x/checkpoints_best/variables --output m.jaxexport \\
        --input_shape 388,388,1 --batch 8 --platforms cpu,cuda

The artifact is the serialized StableHLO of `x -> model.apply(variables, x)["logits"]`
with the variables embedded as constants: a normalised float32 batch
(B, *spatial, C) maps to float32 logits. The batch size is symbolic by default
(any B) or fixed with --batch; the spatial shape is fixed (--input_shape, by
default the run's eval tile or training crop). A JSON file next to it
(`<output>.json`) records the input shape, normalisation, class names and
output margin. `load_exported(path)` needs only `jax`: no segjax model code.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    spatial = tuple(config.get("eval", {}).get("tile", ())) or tuple(config.data.crop)
    return (*spatial, int(config.data.image_channels))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m segjax.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from segjax import cli  # the exporter's CLI only; artifacts load without segjax
    cli.add_checkpoint_flags(parser)
    parser.add_argument("--output", required=True, help="artifact path (metadata at <path>.json)")
    parser.add_argument("--input_shape", help="spatial size and channels, e.g. 572,572,1")
    parser.add_argument("--batch", type=int, help="fixed batch size (default: symbolic)")
    parser.add_argument("--platforms", help="comma-separated, e.g. cpu,cuda,tpu (default: "
                                            "the current backend)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from segjax import cli  # pylint: disable=import-outside-toplevel
    args = parse_args(argv)
    model, variables, config = cli.restore(args)
    input_shape = (tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape
                   else _default_input_shape(config))
    exported = export_model(model, variables, input_shape, batch=args.batch,
                            platforms=args.platforms.split(",") if args.platforms else None)
    data = config.get("data", {})
    metadata = {"model": config.model.to_dict() if hasattr(config.model, "to_dict")
                else dict(config.model),
                "mean": list(data.get("mean", ())), "std": list(data.get("std", ())),
                "class_names": list(data.get("class_names", ())),
                "margin": [(i - o) // 2 for i, o in zip(
                    input_shape[:-1], exported.out_avals[0].shape[1:-1])]}
    save_exported(exported, args.output, metadata)
    print(f"exported {config.model.name} {tuple(exported.in_avals[0].shape)} -> "
          f"{tuple(exported.out_avals[0].shape)} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
