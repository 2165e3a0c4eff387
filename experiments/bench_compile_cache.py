"""The persistent compilation cache: compile time of a first start and of a restart.

    python experiments/bench_compile_cache.py --config configs/unet_isbi.py
    python experiments/bench_compile_cache.py --config configs/deeplabv3plus_camvid.py:cpu

Runs the config's training twice in fresh processes that share one new,
empty cache directory (config.runtime.compilation_cache_dir): a first start
(--steps steps in a new workdir: every program compiles), then a restart
(the same workdir, one step more: it resumes from the checkpoint and finds
its programs in the cache). Validation is off (data.val_split=''), so the
numbers are the train step, initialisation and the small programs around
them. Each run reports the seconds XLA spent producing executables
(`/jax/core/compile/backend_compile_duration`: compiling, or reading the
cache), the cache hits, and the process's wall time. The machine's load
shows in every number: run it twice.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, time
started = time.perf_counter()
import jax
from jax import monitoring
from segjax import config as config_lib
from segjax.train import loop

totals = {"compile_seconds": 0.0, "compiles": 0, "cache_hits": 0}

def on_duration(event, seconds, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        totals["compile_seconds"] += seconds
        totals["compiles"] += 1

def on_event(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        totals["cache_hits"] += 1

monitoring.register_event_duration_secs_listener(on_duration)
monitoring.register_event_listener(on_event)
config = config_lib.load(CONFIG)
config.unlock()
config.data.val_split = ""
config.train.steps = STEPS
config.train.progress_bar = False
config.runtime.compilation_cache_dir = CACHE
loop.train_and_evaluate(config, WORKDIR)
totals["wall_seconds"] = time.perf_counter() - started
print("RESULT" + json.dumps(totals))
"""


def run(config: str, workdir: Path, cache: Path, steps: int) -> dict:
    code = (RUN.replace("CONFIG", repr(config)).replace("STEPS", str(steps))
            .replace("CACHE", repr(str(cache))).replace("WORKDIR", repr(str(workdir))))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin",
                                 "HOME": str(Path.home())})
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT")]
    if result.returncode or not lines:
        raise SystemExit(f"run failed ({result.returncode}):\n{result.stdout[-3000:]}"
                         f"\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT"):])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segjax-cache-bench-") as scratch:
        cache, workdir = Path(scratch) / "cache", Path(scratch) / "run"
        first = run(args.config, workdir, cache, args.steps)
        restart = run(args.config, workdir, cache, args.steps + 1)
    print(json.dumps({"config": args.config, "first_start": first, "restart": restart}))
    print(f"| {args.config} | {first['compile_seconds']:.1f} s ({first['compiles']} programs) | "
          f"{restart['compile_seconds']:.1f} s ({restart['cache_hits']} from the cache) | "
          f"{first['wall_seconds']:.0f} s | {restart['wall_seconds']:.0f} s |")


if __name__ == "__main__":
    main()
