"""Runtime settings every entry point applies from the config: `configure(config)`.

Importing segjax changes no process-wide state. What a run needs of its
process (which convolution formulation segjax's layers use, which PRNG makes
segjax's own keys, whether compiler memory is handed back to the OS) is
applied by `configure(config)`, which every entry point calls first: training
(`segjax.train.loop`), `segjax.predict`, `segjax.evaluate`, `segjax.export`,
`segjax.convert` and the benchmarks. The settings live in `config.runtime`:

    conv_impl         'auto' | 'native' | 'cpu': `segjax.ops.conv`'s formulation
                      (auto: segjax's CPU formulation on CPU, XLA's elsewhere)
    prng_impl         the PRNG of the keys segjax makes (`key(seed)`): 'rbg' by
                      default, because XLA:CPU compiles threefry draws slowly
                      (docs/runtime.md); JAX's own default PRNG is left alone
    trim_host_memory  after each XLA compile, return the heap the compiler freed
                      to the OS (glibc only; `segjax.host_memory`)
    compilation_cache_dir
                      JAX's persistent compilation cache, so a restarted, resumed or
                      repeated run loads its compiled programs instead of compiling
                      them again: 'auto' (default) keeps a directory JAX was already
                      given (JAX_COMPILATION_CACHE_DIR, jax.config), else
                      $XDG_CACHE_HOME/segjax/jax_compilation_cache (~/.cache/...);
                      a path; or '' for none. One cache serves every run and config
                      of a user (entries are keyed by the program, the compiler and
                      the devices); JAX caches compilations of 1 s or more
                      (jax_persistent_cache_min_compile_time_secs). The directory is
                      trusted code: do not share it with users you do not trust.

`initialize_distributed(...)` joins the processes of a multi-host run
(`jax.distributed.initialize`); `segjax.main` calls it from its
--coordinator_address / --num_processes / --process_id / --distributed flags
before anything touches a device (see docs/scale.md and experiments/launch/).

Configs written before `config.runtime` existed kept `conv_impl` in
`config.model`; it is honoured there too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax

from segjax import host_memory
from segjax.ops import conv

PRNG_IMPLS = ("rbg", "unsafe_rbg", "threefry2x32")


@dataclasses.dataclass(frozen=True)
class Settings:
    conv_impl: str = "auto"
    prng_impl: str = "rbg"
    trim_host_memory: bool = True
    compilation_cache_dir: str = "auto"


_current = Settings()
_FIELDS = tuple(field.name for field in dataclasses.fields(Settings))


def settings_from_config(config, **overrides) -> Settings:
    """The runtime settings of a config (its `runtime` section), with non-None overrides."""
    fields = {}
    runtime = config.get("runtime") if config is not None and hasattr(config, "get") else None
    if runtime is not None:
        fields = {key: runtime[key] for key in _FIELDS if key in runtime}
    else:
        model = config.get("model") if config is not None and hasattr(config, "get") else None
        if model is not None and "conv_impl" in model:
            fields["conv_impl"] = model["conv_impl"]
    fields.update({key: value for key, value in overrides.items() if value is not None})
    return Settings(**fields)


def configure(config=None, **overrides) -> Settings:
    """Applies `config.runtime` (and keyword overrides such as conv_impl='native')."""
    global _current
    settings = settings_from_config(config, **overrides)
    if settings.prng_impl not in PRNG_IMPLS:
        raise ValueError(f"config.runtime.prng_impl={settings.prng_impl!r} is not one of "
                         f"{', '.join(PRNG_IMPLS)}")
    conv.set_default_implementation(settings.conv_impl)
    if settings.trim_host_memory:
        host_memory.trim_after_each_compile()
    configure_compilation_cache(settings.compilation_cache_dir)
    _current = settings
    return settings


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "segjax" / "jax_compilation_cache"


def configure_compilation_cache(setting: str) -> str | None:
    """Points JAX's persistent compilation cache at `setting` (see the module docstring).

    Returns the directory in use (None: no cache). A directory that cannot be
    created leaves the cache off with a one-line warning.
    """
    current = jax.config.jax_compilation_cache_dir
    if not setting:
        return current
    path = (current or str(default_cache_dir())) if setting == "auto" \
        else os.path.expanduser(str(setting))
    if path == current:
        return current
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"warning: config.runtime.compilation_cache_dir: cannot create {path} "
              f"({error.strerror or error}); compiling without a persistent cache", flush=True)
        return current
    from jax.experimental.compilation_cache import compilation_cache
    compilation_cache.set_cache_dir(path)
    compilation_cache.reset_cache()  # a cache opened on another directory is closed
    return path


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """`jax.distributed.initialize`, before any device is used.

    With no arguments JAX detects the cluster (Cloud TPU pods, Slurm, Open
    MPI); the local launcher passes all three. CPU processes exchange their
    collectives through gloo.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


def current() -> Settings:
    """The settings of the last `configure` call (defaults before any)."""
    return _current


def key(seed: int) -> jax.Array:
    """A typed PRNG key of `config.runtime.prng_impl` (see the module docstring)."""
    return jax.random.key(int(seed), impl=_current.prng_impl)
