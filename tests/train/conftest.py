"""Helpers for the training tests: a tiny config and a guarded subprocess runner.

Compilation dominates these tests on small CPUs, so every test process (and
every subprocess) shares one persistent XLA compilation cache directory (a
temporary one, removed at exit, unless SEGJAX_TEST_COMPILE_CACHE names one).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import jax
import pytest

from segjax.config import base_config

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPILE_CACHE = os.environ.get("SEGJAX_TEST_COMPILE_CACHE")
if not COMPILE_CACHE:
    COMPILE_CACHE = tempfile.mkdtemp(prefix="segjax-test-xla-cache-")
    atexit.register(shutil.rmtree, COMPILE_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", COMPILE_CACHE)


def tiny_config(**overrides):
    """A same-padded, batch-normed depth-1 U-Net on 16x16 synthetic crops (seconds to compile)."""
    config = base_config()
    config.model.name = "unet"
    config.model.num_classes = 3
    config.model.padding = "same"
    config.model.norm = "batch"
    config.model.width = 4
    config.model.depth = 1
    config.data.source = "synthetic"
    config.data.train_split = "train[:12]"
    config.data.val_split = "train[12:14]"
    config.data.image_channels = 1
    config.data.class_names = ("background", "a", "b")
    config.data.crop = (16, 16)
    config.data.batch_size = 4
    config.data.num_workers = 0
    config.data.augment.hflip = True
    config.data.synthetic.num_examples = 14
    config.data.synthetic.height = 24
    config.data.synthetic.width = 24
    config.data.synthetic.num_classes = 3
    config.train.steps = 4
    config.train.log_every = 2
    config.train.checkpoint_every = 2
    config.train.eval_every = 4
    config.train.progress_bar = False
    config.train.num_overlays = 1
    for key, value in overrides.items():
        target = config
        *sections, name = key.split("__")
        for section in sections:
            target = target[section]
        target[name] = value
    config.lock()
    return config


def run_python(code: str, *, timeout: float, env: dict | None = None,
               cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter; SIGKILLs it (JAX catches SIGTERM) past `timeout`."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                               **popen_options(env))
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"subprocess timed out after {timeout}s; output:\n{output[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def read_params(workdir, step: int | None = None):
    """Params of a workdir's checkpoint (`step`, or the latest) as numpy arrays."""
    from segjax import checkpoints
    path = Path(workdir) / checkpoints.CHECKPOINTS_DIR
    if step is not None:
        path = path / str(step)
    variables, _ = checkpoints.read_checkpoint(path)
    return variables


class Streamed:
    """A running process whose output lines a thread collects, to wait for a line mid-run."""

    def __init__(self, process: subprocess.Popen):
        import threading
        self.process, self.lines = process, []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        """The first output line matching `pattern` (re.search); fails the test after timeout."""
        import re
        import time
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._reader.is_alive() and
                                      self.process.poll() is not None):
                    self.kill()
                    pytest.fail(f"no line matching {pattern!r}; output:\n{self.output[-4000:]}")
                self._changed.wait(min(remaining, 1.0))

    def finish(self, timeout: float) -> int:
        """The exit code; SIGKILLs the process group and fails the test after `timeout`."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"process did not exit in {timeout}s; output:\n{self.output[-4000:]}")
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def popen_options(env: dict | None = None) -> dict:
    """Popen keywords for a test subprocess: the shared compilation cache, output as text."""
    return {"env": {**os.environ, "JAX_COMPILATION_CACHE_DIR": COMPILE_CACHE,
                    "SEGJAX_TEST_COMPILE_CACHE": COMPILE_CACHE, "PYTHONPATH": str(REPO_ROOT),
                    **(env or {})},
            "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True,
            "start_new_session": True}
