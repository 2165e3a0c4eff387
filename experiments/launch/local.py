"""Local multi-process launcher: N processes of one segjax command on this machine.

    python experiments/launch/local.py --processes 2 --devices_per_process 4 -- \
        --config configs/unet_isbi.py:smoke --workdir /tmp/two_processes

starts N copies of

    python -m segjax.main <args> --coordinator_address localhost:PORT \
        --num_processes N --process_id i

(a free PORT), each seeing `devices_per_process` simulated CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count`), so a multi-host run
(sharded data per process, one checkpoint written by all of them, a
preemption on one host) can be tried and tested on one machine. Each output
line is prefixed with the process index. SIGTERM and SIGINT are passed on to
every process; the launcher exits with the first non-zero exit code, or 0.

The tests start processes with `launch(...)` and send signals to single
processes themselves (tests/train/test_preemption.py). On real hosts start
the same command on every host with --distributed instead (docs/scale.md,
experiments/launch/tpu_pod.sh).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def process_env(devices_per_process: int, env: dict | None = None) -> dict:
    """The environment of one process: CPU devices, the repository importable."""
    full = {**os.environ, **(env or {})}
    flags = [flag for flag in full.get("XLA_FLAGS", "").split()
             if not flag.startswith("--xla_force_host_platform_device_count")]
    full["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count="
                                          f"{devices_per_process}"])
    full.setdefault("JAX_PLATFORMS", "cpu")
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       full.get("PYTHONPATH", "")]))
    return full


def launch(args: Sequence[str], *, processes: int, devices_per_process: int = 1,
           module: str = "segjax.main", env: dict | None = None, port: int | None = None,
           cwd: str | Path = REPO_ROOT, **popen_kwargs) -> list[subprocess.Popen]:
    """Starts `processes` copies of `python -m module args` joined as one JAX run."""
    if processes < 1:
        raise ValueError(f"--processes must be at least 1, got {processes}")
    port = port or free_port()
    started = []
    for index in range(processes):
        command = [sys.executable, "-m", module, *args,
                   f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
                   f"--process_id={index}"]
        started.append(subprocess.Popen(command, cwd=cwd, env=process_env(devices_per_process,
                                                                          env),
                                        **popen_kwargs))
    return started


def _relay(process: subprocess.Popen, index: int) -> None:
    for line in process.stdout:
        sys.stdout.write(f"[{index}] {line}")
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1)
    parser.add_argument("--module", default="segjax.main")
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="arguments of the module, after --")
    options = parser.parse_args(argv)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    processes = launch(args, processes=options.processes,
                       devices_per_process=options.devices_per_process, module=options.module,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def forward(signum, frame):  # pylint: disable=unused-argument
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    relays = [threading.Thread(target=_relay, args=(process, index), daemon=True)
              for index, process in enumerate(processes)]
    for relay in relays:
        relay.start()
    codes = [process.wait() for process in processes]
    for relay in relays:
        relay.join()
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
