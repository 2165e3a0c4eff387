"""transformers / smp references for the SegFormer and DPT tests (random weights, no download).

    model = hf_segformer("b0", num_classes=7)          # SegformerForSemanticSegmentation
    logits = reference_logits(model, x_nhwc)           # NHWC, resized to the input (half-pixel)

Every reference gets random layer-norm and batch-norm parameters and batch
statistics (`randomize_norms`), so a parity test fails if any of them is
mapped wrongly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from segjax import convert
from tests import torch_refs

# transformers SegformerConfig fields of the paper's B0..B5.
SEGFORMER_CONFIGS = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2],
           "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2],
           "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3],
           "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3],
           "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3],
           "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3],
           "decoder_hidden_size": 768},
}


def randomize_norms(model, seed: int = 0):
    """Random affine parameters for every LayerNorm and GroupNorm, and random
    statistics and affine parameters for every BatchNorm."""
    torch = torch_refs.import_torch()
    torch_refs.randomize_bn(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) \
                    and module.weight is not None:
                shape = module.weight.shape
                module.weight.copy_(torch.rand(shape, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
    return model


def hf_segformer(variant: str, num_classes: int, seed: int = 0, meta: bool = False):
    """transformers' SegformerForSemanticSegmentation for MiT-`variant`, random weights, eval."""
    transformers = torch_refs.import_transformers()
    torch = torch_refs.import_torch()
    config = transformers.SegformerConfig(num_labels=num_classes,
                                          **SEGFORMER_CONFIGS[variant])
    if meta:
        with torch.device("meta"):
            return transformers.SegformerForSemanticSegmentation(config)
    torch.manual_seed(seed)
    return randomize_norms(transformers.SegformerForSemanticSegmentation(config), seed).eval()


def smp_segformer(variant: str, num_classes: int, seed: int = 0):
    """segmentation_models_pytorch's Segformer('mit_<variant>'), random weights, eval."""
    smp = torch_refs.import_smp()
    torch = torch_refs.import_torch()
    torch.manual_seed(seed)
    model = smp.Segformer(f"mit_{variant}", encoder_weights=None, classes=num_classes)
    return randomize_norms(model, seed).eval()


def torch_param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def reference_logits(model, x_nhwc: np.ndarray, align_corners: bool = False) -> np.ndarray:
    """The reference's logits (an output object's `.logits`, or a tensor) resized to the
    input's size bilinearly (`align_corners` as the model's own upsampling), NHWC."""
    torch = torch_refs.import_torch()
    out = torch_refs.run_nhwc(model, x_nhwc)
    logits = getattr(out, "logits", out)
    size = x_nhwc.shape[1:3]
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = torch.nn.functional.interpolate(logits, size=size, mode="bilinear",
                                                 align_corners=align_corners)
    return torch_refs.to_nhwc(logits)


def converted(module, torch_model, mapping: str, input_shape):
    """`module`'s variables filled from `torch_model` (strict), shapes from `input_shape`."""
    shapes = jax.eval_shape(functools.partial(module.init, train=False),
                            jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct(input_shape, jnp.float32))
    variables, _ = convert.convert(torch_refs.state_dict_numpy(torch_model), shapes,
                                   convert.get_mapping(mapping).factory(), strict=True)
    return variables


def logits(module, variables, x: np.ndarray) -> np.ndarray:
    apply = jax.jit(functools.partial(module.apply, train=False))
    return np.asarray(apply(variables, jnp.asarray(x))["logits"])


def random_image(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# transformers DPTConfig fields of the three reference configurations (the conversion
# scripts' ADE20K settings: batch norm in the fusion units, the auxiliary head).
DPT_CONFIGS = {
    "b16": {"use_batch_norm_in_fusion_residual": True},
    "l16": {"use_batch_norm_in_fusion_residual": True, "hidden_size": 1024,
            "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
            "backbone_out_indices": [5, 11, 17, 23], "neck_hidden_sizes": [256, 512, 1024, 1024]},
    "hybrid": {"use_batch_norm_in_fusion_residual": True, "is_hybrid": True,
               "reassemble_factors": [1, 1, 1, 0.5], "neck_hidden_sizes": [256, 512, 768, 768]},
}


def hf_dpt(variant: str, num_classes: int, seed: int = 0, meta: bool = False, **overrides):
    """transformers' DPTForSemanticSegmentation, random weights, eval (or on the meta device)."""
    transformers = torch_refs.import_transformers()
    torch = torch_refs.import_torch()
    fields = {**DPT_CONFIGS[variant], **overrides}
    if variant == "hybrid" and "image_size" in overrides:
        size = overrides["image_size"]
        fields["backbone_featmap_shape"] = [1, 1024, size // 16, size // 16]
    config = transformers.DPTConfig(num_labels=num_classes, **fields)
    if meta:
        with torch.device("meta"):
            return transformers.DPTForSemanticSegmentation(config)
    torch.manual_seed(seed)
    model = transformers.DPTForSemanticSegmentation(config)
    with torch.no_grad():  # transformers initialises both to zeros
        model.dpt.embeddings.cls_token.normal_(0, 0.5)
        model.dpt.embeddings.position_embeddings.normal_(0, 0.5)
    return randomize_norms(model, seed).eval()


def hf_dpt_logits(model, x_nhwc: np.ndarray) -> np.ndarray:
    """`DPTForSemanticSegmentation.forward`'s logits, its steps written out so that the
    patch grid reaches the neck: the model's own forward assumes a square grid, and the
    hybrid's embeddings need `interpolate_pos_encoding` at any other size than
    `config.image_size`. Upsampled to the input's size (align_corners=True), NHWC."""
    torch = torch_refs.import_torch()
    config = model.config
    pixels = torch_refs.to_nchw(x_nhwc)
    with torch.no_grad():
        if config.is_hybrid:
            embedded = model.dpt.embeddings(pixels, interpolate_pos_encoding=True)
        else:
            embedded = model.dpt.embeddings(pixels)
        hidden, taps = embedded.last_hidden_states, []
        for layer in model.dpt.encoder.layer:
            hidden = layer(hidden)
            taps.append(hidden)
        if config.is_hybrid:
            selected = list(embedded.intermediate_activations) + [
                taps[index] for index in config.backbone_out_indices[2:]]
        else:
            selected = [taps[index] for index in config.backbone_out_indices]
        grid = [n // config.patch_size for n in x_nhwc.shape[1:3]]
        logits = model.head(model.neck(selected, *grid))
        logits = torch.nn.functional.interpolate(logits, size=x_nhwc.shape[1:3],
                                                 mode="bilinear", align_corners=True)
    return torch_refs.to_nhwc(logits)
