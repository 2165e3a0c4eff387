"""PyTorch reference models for parity tests (test-only; segjax never imports torch).

    from tests import torch_refs
    torchvision = torch_refs.import_torchvision()      # skips the test if unavailable
    model = torch_refs.randomize_bn(torchvision.models.resnet50()).eval()
    y = torch_refs.run_nhwc(model, x_nhwc)

The only torchvision wheel available here (0.28.0) is a CUDA build that
registers its C++ operators only when its CUDA libraries load. On CPU torch
its Python side then fails at import, registering fake kernels for
`torchvision::nms` / `torchvision::qnms`, which do not exist. Defining those two
operator schemas first (the schemas torchvision's C++ code declares) lets it
import; the detection ops stay unusable, the models work.

Every `import_*` helper skips the calling test with the import error as the
reason when a reference package is missing, never silently.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

# The schemas of torchvision's csrc/ops/nms.cpp and csrc/ops/quantized/cpu/qnms_kernel.cpp
# (qnms receives the integer representations of quantized boxes and scores).
TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_library = None  # keeps the schema definitions alive


def import_or_skip(module: str, why: str = ""):
    """Imports `module` or skips the test, naming the module and the error."""
    try:
        return importlib.import_module(module)
    except Exception as error:  # ImportError, or a broken wheel failing at import
        pytest.skip(f"PyTorch reference {module!r} unavailable ({type(error).__name__}: "
                    f"{error}){'; ' + why if why else ''}; install with `make install-dev`")


def import_torch():
    return import_or_skip("torch")


def define_torchvision_schemas() -> None:
    """Defines torchvision::nms and torchvision::qnms once (before importing torchvision)."""
    global _torchvision_library
    if _torchvision_library is not None:
        return
    torch = import_torch()
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in TORCHVISION_SCHEMAS:
        try:
            library.define(schema)
        except RuntimeError as error:  # a CPU torchvision build already declared it
            if "already" not in str(error) and "multiple" not in str(error).lower():
                raise
    _torchvision_library = library


def import_torchvision():
    """torchvision on CPU torch (see the module docstring), or skip the test."""
    import_torch()
    define_torchvision_schemas()
    return import_or_skip("torchvision", "torchvision 0.28.0 installs with --no-deps")


def import_transformers():
    define_torchvision_schemas()  # transformers imports torchvision when it is installed
    return import_or_skip("transformers")


def import_timm():
    import_torchvision()  # timm imports torchvision when it is installed
    return import_or_skip("timm")


def import_smp():
    import_torchvision()
    return import_or_skip("segmentation_models_pytorch")


def randomize_bn(model, seed: int = 0):
    """Gives every BatchNorm random running statistics and affine parameters, so
    a parity test fails if statistics or scale/bias are mapped wrongly."""
    torch = import_torch()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(shape, generator=generator) * 0.5 + 0.75)
                if module.affine:
                    module.weight.copy_(torch.rand(shape, generator=generator) * 0.5 + 0.75)
                    module.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
    return model


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


def to_nchw(x_nhwc: np.ndarray):
    torch = import_torch()
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x_nhwc, (0, 3, 1, 2))))


def to_nhwc(y_nchw) -> np.ndarray:
    return np.transpose(y_nchw.detach().cpu().numpy(), (0, 2, 3, 1))


def run_nhwc(model, x_nhwc: np.ndarray):
    """Runs `model` (eval, no grad) on an NHWC numpy batch; NCHW tensors come back NHWC."""
    torch = import_torch()
    with torch.no_grad():
        out = model(to_nchw(x_nhwc))
    return out


def max_rel_diff(actual, expected) -> float:
    """max |actual - expected| / max |expected| (the tests' parity measure)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != reference shape {expected.shape}")
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-12))
