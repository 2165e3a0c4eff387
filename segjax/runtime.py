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
                      default, because XLA:CPU compiles threefry draws slowly (a jitted
                      init of a small U-Net compiled in 67-107 s with threefry, 10 s
                      with rbg); JAX's own default PRNG is left alone
    trim_host_memory  after each XLA compile, return the heap the compiler freed
                      to the OS (glibc only; `segjax.host_memory`)

Configs written before `config.runtime` existed kept `conv_impl` in
`config.model`; it is honoured there too.
"""

from __future__ import annotations

import dataclasses

import jax

from segjax import host_memory
from segjax.ops import conv

PRNG_IMPLS = ("rbg", "unsafe_rbg", "threefry2x32")


@dataclasses.dataclass(frozen=True)
class Settings:
    conv_impl: str = "auto"
    prng_impl: str = "rbg"
    trim_host_memory: bool = True


_current = Settings()


def settings_from_config(config, **overrides) -> Settings:
    """The runtime settings of a config (its `runtime` section), with non-None overrides."""
    fields = {}
    runtime = config.get("runtime") if config is not None and hasattr(config, "get") else None
    if runtime is not None:
        fields = {key: runtime[key] for key in ("conv_impl", "prng_impl", "trim_host_memory")
                  if key in runtime}
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
    _current = settings
    return settings


def current() -> Settings:
    """The settings of the last `configure` call (defaults before any)."""
    return _current


def key(seed: int) -> jax.Array:
    """A typed PRNG key of `config.runtime.prng_impl` (see the module docstring)."""
    return jax.random.key(int(seed), impl=_current.prng_impl)
