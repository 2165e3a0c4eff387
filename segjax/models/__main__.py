"""`python -m segjax.models`: every registered model, its parameter count, its paper.

One line per model: registered name, parameter count at the model's default
(paper) configuration and input shape, and the paper it implements. Counting
uses `jax.eval_shape`, so no weights are materialised.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

from segjax.models import registry
from segjax.models.segmenter import count_params


def default_param_count(entry: registry.Entry) -> int:
    model = entry.factory(**entry.defaults)
    x = jax.ShapeDtypeStruct(entry.input_shape, jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    return count_params(variables)


def main(argv=None) -> int:
    del argv
    rows = []
    for name in registry.names("model"):
        entry = registry.get("model", name)
        if entry.input_shape is None:
            continue  # a generic composite (e.g. "segmenter") has no paper default
        rows.append((name, f"{default_param_count(entry):,}", entry.paper))
    width = max(len(r[0]) for r in rows)
    count_width = max(len(r[1]) for r in rows)
    for name, count, paper in rows:
        print(f"{name:<{width}}  {count:>{count_width}}  {paper}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
