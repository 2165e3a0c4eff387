"""Mappings of ImageNet Vision Transformers onto the DPT encoders `dpt_vit_b16`, `dpt_vit_l16`
and `dpt_vit_hybrid` (`segjax.models.encoders.vit.DPTViT`): the backbones DPT starts from.

- 'hf_vit': transformers' `ViTModel` / `ViTForImageClassification` (the
  `google/vit-*-patch16-384` checkpoints): `vit.embeddings.{cls_token,
  position_embeddings}`, `vit.embeddings.patch_embeddings.projection`, the
  blocks, `vit.layernorm`; `classifier` and `vit.pooler` are dropped. The
  blocks come in two layouts (`hf_vit_blocks`, shared with `segjax.convert.dpt`):
  the published files' `vit.encoder.layer.{i}.attention.attention.{query,key,
  value}`, `.attention.output.dense`, `.intermediate.dense`, `.output.dense`
  (what the presets' pinned files hold), and transformers 5's own
  `vit.layers.{i}.attention.{q,k,v,o}_proj`, `.mlp.{fc1,fc2}` (what
  `save_pretrained` writes; transformers renames the old names on loading).
  `layernorm_before` / `layernorm_after` are the same in both.
- 'timm_vit': timm's `VisionTransformer` and its R50 hybrid
  (`vit_base_patch16_384`, `vit_base_r50_s16_384`, the weights DPT's official
  code loads): `cls_token`, `pos_embed`, `patch_embed.proj`,
  `blocks.{i}.{norm1,norm2}`, `blocks.{i}.attn.qkv` (one fused projection, cut
  into query, key and value), `blocks.{i}.attn.proj`, `blocks.{i}.mlp.{fc1,fc2}`,
  `norm`; the hybrid's ResNetV2 `patch_embed.backbone.stem.{conv,norm}` and
  `...stages.{s}.blocks.{b}.{conv,norm}{1,2,3}` / `downsample.{conv,norm}`;
  `head` and `pre_logits` are dropped.

The encoders' reassembly layers (`reassemble{i}/...`) are DPT's own: no ImageNet
checkpoint holds them, so a conversion leaves them unfilled.
"""

from __future__ import annotations

from segjax.convert.core import IGNORE, Target, register_mapping, rules

ENCODERS = ("dpt_vit_b16", "dpt_vit_l16")
HYBRID = ("dpt_vit_hybrid",)

# A transformers ViT block: (torch module under the block, segjax module), each torch name
# in both layouts (module docstring): published files | transformers >= 5.
_HF_BLOCK = (
    (r"attention\.(?:attention\.query|q_proj)", "attention/query"),
    (r"attention\.(?:attention\.key|k_proj)", "attention/key"),
    (r"attention\.(?:attention\.value|v_proj)", "attention/value"),
    (r"attention\.(?:output\.dense|o_proj)", "attention/out"),
    (r"layernorm_before", "norm1"),
    (r"layernorm_after", "norm2"),
    (r"(?:intermediate\.dense|mlp\.fc1)", "mlp/fc1"),
    (r"(?:output\.dense|mlp\.fc2)", "mlp/fc2"),
)
_HF_LAYER = r"(?:encoder\.layer|layers)\.(\d+)\."


def hf_vit_blocks(torch_prefix: str, flax_prefix: str) -> list[tuple[str, str]]:
    """Rules for transformers' ViT blocks under `torch_prefix` (a regex ending in '.', e.g.
    r"vit\.") onto `flax_prefix`/block{i}, accepting both layouts (module docstring)."""
    return [(rf"{torch_prefix}{_HF_LAYER}{pattern}", rf"{flax_prefix}/block\1/{path}")
            for pattern, path in _HF_BLOCK]


@register_mapping("hf_vit", encoders=ENCODERS)
def hf_vit():
    """transformers ViTModel / ViTForImageClassification onto a DPT ViT encoder."""
    return rules(
        (r"vit\.embeddings", "vit"),
        (r"vit\.embeddings\.patch_embeddings\.projection", "patch_embed"),
        *hf_vit_blocks(r"vit\.", "vit"),
        (r"vit\.layernorm", "vit/norm"),
        (r"vit\.pooler(\..*)?", IGNORE),
        (r"classifier", IGNORE),
    )


def _resnetv2_layer(match) -> str:
    """timm ResNetV2 `stages.{s}.blocks.{b}.<part>` -> segjax's BiT-style ResNet."""
    stage, block, part = int(match.group(1)) + 1, match.group(2), match.group(3)
    base = f"backbone/layer{stage}_{block}"
    if part == "downsample.conv":
        return f"{base}/downsample_conv"
    if part == "downsample.norm":
        return f"{base}/downsample_bn/gn"
    kind, index = part[:-1], part[-1]
    return f"{base}/conv{index}" if kind == "conv" else f"{base}/bn{index}/gn"


@register_mapping("timm_vit", encoders=ENCODERS + HYBRID)
def timm_vit():
    """timm VisionTransformer (and the R50+ViT hybrid) onto a DPT ViT encoder."""
    block = r"blocks\.(\d+)\."
    return rules(
        (r"", Target("vit", leaves={"pos_embed": "position_embeddings"})),
        (r"patch_embed\.proj", "patch_embed"),
        (r"patch_embed\.backbone\.stem\.conv", "backbone/conv1"),
        (r"patch_embed\.backbone\.stem\.norm", "backbone/bn1/gn"),
        (r"patch_embed\.backbone\.stages\.(\d)\.blocks\.(\d+)\."
         r"(conv[123]|norm[123]|downsample\.conv|downsample\.norm)", _resnetv2_layer),
        (block + r"norm1", r"vit/block\1/norm1"),
        (block + r"norm2", r"vit/block\1/norm2"),
        (block + r"attn\.qkv", Target(r"vit/block\1/attention", split=("query", "key", "value"))),
        (block + r"attn\.proj", r"vit/block\1/attention/out"),
        (block + r"mlp\.fc1", r"vit/block\1/mlp/fc1"),
        (block + r"mlp\.fc2", r"vit/block\1/mlp/fc2"),
        (r"norm", "vit/norm"),
        (r"(head|pre_logits)(\..*)?", IGNORE),
    )
