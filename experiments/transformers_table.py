"""Prints docs/transformers.md's table: SegFormer-B0..B5 and DPT, parameters against the
reference, forward GFLOPs at 512x512, parity status.

    .venv/bin/python experiments/transformers_table.py
    .venv/bin/python experiments/transformers_table.py --only segformer_b0 dpt_vit_b16

Parameters and GFLOPs as experiments/models_table.py measures them (abstract
initialisation; XLA's cost analysis of the compiled forward at batch 1,
512x512x3, float32, the "native" convolution; a multiply-add is 2 FLOPs). The
reference counts are those the tests assert: transformers'
SegformerForSemanticSegmentation / DPTForSemanticSegmentation built from the
reference configurations at 150 classes (tests/models/test_segformer.py,
tests/models/test_dpt.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flax.linen as nn  # noqa: E402  pylint: disable=wrong-import-position
import jax  # noqa: E402  pylint: disable=wrong-import-position
import jax.numpy as jnp  # noqa: E402  pylint: disable=wrong-import-position

from experiments.models_table import measure  # noqa: E402  pylint: disable=wrong-import-position
from segjax.models import registry  # noqa: E402  pylint: disable=wrong-import-position
from segjax import runtime  # noqa: E402  pylint: disable=wrong-import-position
from segjax.ops.resize import resize
from tests.models.test_dpt import REFERENCE_PARAMS_150 as DPT_PARAMS  # noqa: E402
from tests.models.test_segformer import HF_PARAMS_150  # noqa: E402

SEGFORMER_TESTS = "tests/models/test_segformer.py"
DPT_TESTS = "tests/models/test_dpt.py"
# (model, reference, parity status)
MODELS = (
    ("segformer_b0", "transformers SegformerForSemanticSegmentation",
     f"transformers: 64x64, 72x104, 96x128, 40x56 ({SEGFORMER_TESTS}); "
     "smp Segformer: 64x64, 64x96 (slow)"),
    ("segformer_b1", "transformers SegformerForSemanticSegmentation",
     "same code and converter as B0/B2; counts asserted"),
    ("segformer_b2", "transformers SegformerForSemanticSegmentation",
     "transformers: 64x64, 96x64 (slow)"),
    ("segformer_b3", "transformers SegformerForSemanticSegmentation",
     "same code and converter as B0/B2; counts asserted"),
    ("segformer_b4", "transformers SegformerForSemanticSegmentation",
     "same code and converter as B0/B2; counts asserted"),
    ("segformer_b5", "transformers SegformerForSemanticSegmentation",
     "same code and converter as B0/B2; counts asserted"),
    ("dpt_vit_b16", "transformers DPTForSemanticSegmentation",
     f"transformers: 64x64, 96x64 (slow); a 4-block ViT, every readout, 64x64, 64x96 "
     f"({DPT_TESTS})"),
    ("dpt_vit_l16", "transformers DPTForSemanticSegmentation (Intel/dpt-large-ade config)",
     "same code and converter as ViT-B; count asserted"),
    ("dpt_hybrid", "transformers DPTForSemanticSegmentation (is_hybrid, BiT ResNet-50)",
     "transformers: 64x96 (slow)"),
)


def upsampling_gflops(name: str, size: int) -> float:
    """GFLOPs of resizing the heads' logits to the input (XLA's half-pixel bilinear resize,
    `jax.image.resize`, is two dense matmuls; the align_corners path gathers)."""
    model = registry.build({"name": name})
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    heads = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.module.name in ("head", "aux_head") and context.method_name == "__call__":
            heads.append(jax.ShapeDtypeStruct(out.shape, out.dtype))
        return out

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    total = 0.0
    for logits in heads:
        upsample = jax.jit(lambda y: resize(y, (size, size), align_corners=model.align_corners))
        analysis = upsample.lower(logits).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        total += float(analysis.get("flops", 0.0)) / 1e9
    return total


REFERENCE = {**{f"segformer_{variant}": count for variant, count in HF_PARAMS_150.items()},
             **DPT_PARAMS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--only", nargs="*", help="registered model names (default: all)")
    args = parser.parse_args(argv)
    runtime.configure(conv_impl="native")  # XLA's convolutions: what cost analysis counts
    print(f"command: python experiments/transformers_table.py {' '.join(argv or sys.argv[1:])}")
    print(f"\n| model | parameters | reference | reference parameters | GFLOPs @ "
          f"{args.size}x{args.size} | of which logits upsampling | parity (max abs diff / "
          "max abs logit < 1e-4) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    for name, reference, parity in MODELS:
        if args.only and name not in args.only:
            continue
        params, gflops = measure(name, args.size)
        same = "=" if params == REFERENCE[name] else "!="
        upsampling = upsampling_gflops(name, args.size)
        print(f"| {name} | {params:,} | {reference} | {same} {REFERENCE[name]:,} | "
              f"{gflops:.1f} | {upsampling:.1f} | {parity} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
