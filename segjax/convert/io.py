"""Reading PyTorch checkpoints: `.pth`/`.pt`/`.bin` (torch.load, weights only) or `.safetensors`.

torch is imported here lazily, only when a torch-pickled checkpoint is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segjax.convert.core import ConversionError, as_numpy

# Keys under which training scripts commonly nest the state dict.
WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module")
# Prefixes added by wrappers (DataParallel / DistributedDataParallel).
WRAPPER_PREFIXES = ("module.",)


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        hasattr(v, "shape") for v in value.values())


def unwrap(checkpoint: Any, source: str) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint (nested under 'state_dict' etc.)."""
    if _is_tensor_dict(checkpoint):
        state = checkpoint
    else:
        nested = [key for key in WRAPPER_KEYS
                  if isinstance(checkpoint, dict) and _is_tensor_dict(checkpoint.get(key))]
        if not nested:
            keys = list(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f"{source}: no state dict found: expected a dict of tensors, or "
                             f"one under {', '.join(WRAPPER_KEYS)}; found {keys}")
        state = checkpoint[nested[0]]
    for prefix in WRAPPER_PREFIXES:
        if all(name.startswith(prefix) for name in state):
            state = {name[len(prefix):]: value for name, value in state.items()}
    return state


def load_state_dict(path) -> dict[str, np.ndarray]:
    """A PyTorch state dict as numpy arrays from `.safetensors` or a torch pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint: no file at {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="numpy") as handle:
                state = {name: handle.get_tensor(name) for name in handle.keys()}
        except (TypeError, ValueError):  # bfloat16 has no numpy dtype: read through torch
            from safetensors.torch import load_file
            state = {name: as_numpy(t) for name, t in load_file(str(path)).items()}
        return unwrap(state, str(path))
    import torch  # only here: segjax never imports torch on its import path
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise ConversionError(
            f"--checkpoint: {path} is not a PyTorch checkpoint that torch.load reads "
            f"({_first_line(error)}); expected a state dict saved with torch.save, or a "
            ".safetensors file") from None
    return {name: as_numpy(value) for name, value in unwrap(checkpoint, str(path)).items()}


def _first_line(error: BaseException) -> str:
    """The error's first line: torch's own advice (weights_only=False) does not apply here."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
