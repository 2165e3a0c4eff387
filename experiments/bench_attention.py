"""segjax.ops.attention: its CPU formulations timed at the shapes segjax's transformers use.

    .venv/bin/python experiments/bench_attention.py            # all shapes, 15 timed calls
    .venv/bin/python experiments/bench_attention.py --repeats 3 --shapes segformer_b0_s1

For each shape, each implementation ("xla": jax.nn.dot_product_attention's XLA
path; "einsum": segjax's written-out formulation) is compiled once for the
forward and once for the forward+backward (gradient of sum(out * cotangent)
with respect to q, k and v), then the implementations' calls are timed in
turn (interleaved, so that a load change on the shared machine hits all of
them alike); the minimum (and the median) over the timed calls is printed as
a Markdown table, with the command that produced it. The numbers in
segjax/ops/attention.py's docstring come from this script.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from segjax.ops import attention as attention_ops  # noqa: E402

# name: (batch, T, S, heads, head size)
SHAPES = {
    "segformer_b0_s1": (8, 4096, 64, 1, 32),   # 256x256 input, stage 1 (stride 4, sr 8)
    "segformer_b0_s2": (8, 1024, 64, 2, 32),   # stage 2 (stride 8, sr 4)
    "segformer_b0_s3": (8, 256, 64, 5, 32),    # stage 3 (stride 16, sr 2)
    "segformer_b0_s4": (8, 64, 64, 8, 32),     # stage 4 (stride 32, no reduction)
    "vit_b16_384": (2, 577, 577, 12, 64),      # ViT-B/16 at 384x384 (DPT)
}


def operands(shape, seed: int = 0):
    batch, t, s, heads, size = shape
    rng = np.random.default_rng(seed)
    draw = lambda *dims: jnp.asarray(rng.standard_normal(dims, dtype=np.float32))
    return (draw(batch, t, heads, size), draw(batch, s, heads, size),
            draw(batch, s, heads, size), draw(batch, t, heads, size))


def compiled(shape, implementation: str):
    """The jitted forward and forward+backward of one implementation, compiled and warmed up."""
    q, k, v, cotangent = operands(shape)
    forward = jax.jit(lambda q, k, v: attention_ops.attention(
        q, k, v, implementation=implementation))

    def loss(q, k, v, cotangent):
        return jnp.sum(attention_ops.attention(q, k, v, implementation=implementation)
                       * cotangent)

    backward = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    calls = ((forward, (q, k, v)), (backward, (q, k, v, cotangent)))
    for fn, args in calls:
        jax.block_until_ready(fn(*args))
    return calls


def measure(shape, implementations, repeats: int) -> dict[str, list[list[float]]]:
    """{implementation: [forward ms, backward ms] lists}, the implementations' calls
    interleaved so that a load change on the shared machine hits all of them alike."""
    calls = {name: compiled(shape, name) for name in implementations}
    times = {name: [[], []] for name in implementations}
    for _ in range(repeats):
        for name in implementations:
            for direction, (fn, args) in enumerate(calls[name]):
                start = time.perf_counter()
                jax.block_until_ready(fn(*args))
                times[name][direction].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--implementations", nargs="*", default=["xla", "einsum"])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    print(f"command: python experiments/bench_attention.py {' '.join(argv or sys.argv[1:])}")
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}\n")
    header = " | ".join(f"{name} fwd | {name} fwd+bwd" for name in args.implementations)
    print("ms per call, min (median)\n")
    print(f"| shape | (batch, T, S, N, H) | {header} |")
    print("|" + " --- |" * (2 + 2 * len(args.implementations)))
    for name in args.shapes:
        times = measure(SHAPES[name], args.implementations, args.repeats)
        cells = [f"{min(t):.1f} ({np.median(t):.1f})" for implementation in args.implementations
                 for t in times[implementation]]
        print(f"| {name} | {SHAPES[name]} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
