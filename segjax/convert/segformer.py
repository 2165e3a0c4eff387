"""Mappings of PyTorch SegFormers onto `segformer_b*` and the `mit_b*` encoders.

- 'hf_segformer' (models) and 'hf_mit' (encoders): transformers'
  `SegformerForSemanticSegmentation`, and `SegformerModel` /
  `SegformerForImageClassification` (the classifier is dropped), in both of
  transformers' layouts: v5
  (`segformer.stages.{s}.blocks.{b}.attention.q_proj`, `...sequence_reduction...`,
  `decode_head.linear_projections.{i}`) and v4, the layout of the checkpoints
  published on the Hub (`segformer.encoder.block.{s}.{b}.attention.self.query`,
  `...attention.self.sr`, `mlp.dense1`, `decode_head.linear_c.{i}`).
- 'smp_segformer': segmentation_models_pytorch's `Segformer` with a `mit_b*`
  encoder (`encoder.block{s+1}.{b}.attn.kv` is one fused key/value
  projection, cut into `key` and `value`; `decoder.mlp_stage.{i}` projects
  stage 4 - i; `decoder.fuse_stage.{0,1}` conv + BN; `segmentation_head.0`).
- 'smp_mit': smp's `mit_b*` encoder alone (the names above without
  `encoder.`, e.g. smp-hub's ImageNet weights; its classifier `head` is dropped).

segjax names: `encoder/stage{s}_patch_embed/{conv,norm}`,
`encoder/stage{s}_block{b}/{norm1,norm2}`,
`.../attention/{query,key,value,out,reduce,reduce_norm}`,
`.../mlp/{fc1,dwconv,fc2}`, `encoder/stage{s}_norm`; `decoder/proj{i}`
(stride 4 * 2^i), `decoder/fuse/{conv,norm/bn}`; `head/classifier`. Nothing
depends on the variant, the number of classes or the input size: one mapping
serves B0-B5 at any class count (the shapes are checked tensor by tensor).
"""

from __future__ import annotations

from segjax.convert.core import IGNORE, Target, chain, prefixed, register_mapping, rules
from segjax.models.encoders.mit import VARIANTS

MODELS = tuple(f"segformer_{variant}" for variant in VARIANTS)
ENCODERS = tuple(f"mit_{variant}" for variant in VARIANTS)

_HF_BLOCK_V5 = (
    (r"layernorm_before", "norm1"),
    (r"layernorm_after", "norm2"),
    (r"attention\.q_proj", "attention/query"),
    (r"attention\.k_proj", "attention/key"),
    (r"attention\.v_proj", "attention/value"),
    (r"attention\.o_proj", "attention/out"),
    (r"attention\.sequence_reduction\.sequence_reduction", "attention/reduce"),
    (r"attention\.sequence_reduction\.layer_norm", "attention/reduce_norm"),
)
_HF_BLOCK_V4 = (
    (r"layer_norm_1", "norm1"),
    (r"layer_norm_2", "norm2"),
    (r"attention\.self\.query", "attention/query"),
    (r"attention\.self\.key", "attention/key"),
    (r"attention\.self\.value", "attention/value"),
    (r"attention\.output\.dense", "attention/out"),
    (r"attention\.self\.sr", "attention/reduce"),
    (r"attention\.self\.layer_norm", "attention/reduce_norm"),
)
_MLP = (
    (r"mlp\.(?:fc1|dense1)", "mlp/fc1"),
    (r"mlp\.dwconv\.dwconv", "mlp/dwconv"),
    (r"mlp\.(?:fc2|dense2)", "mlp/fc2"),
)


def _block_rules(block_prefix: str, parts) -> list[tuple[str, str]]:
    """Rules for the modules of one block: `block_prefix` captures (stage, block)."""
    return [(rf"{block_prefix}\.{pattern}", rf"stage\1_block\2/{path}")
            for pattern, path in (*parts, *_MLP)]


def hf_mit():
    """transformers' SegformerModel (v4 or v5 names) onto a MixTransformer."""
    return rules(
        # v5
        (r"stages\.(\d)\.patch_embeddings\.proj", r"stage\1_patch_embed/conv"),
        (r"stages\.(\d)\.patch_embeddings\.layer_norm", r"stage\1_patch_embed/norm"),
        *_block_rules(r"stages\.(\d)\.blocks\.(\d+)", _HF_BLOCK_V5),
        (r"stages\.(\d)\.layer_norm", r"stage\1_norm"),
        # v4
        (r"encoder\.patch_embeddings\.(\d)\.proj", r"stage\1_patch_embed/conv"),
        (r"encoder\.patch_embeddings\.(\d)\.layer_norm", r"stage\1_patch_embed/norm"),
        *_block_rules(r"encoder\.block\.(\d)\.(\d+)", _HF_BLOCK_V4),
        (r"encoder\.layer_norm\.(\d)", r"stage\1_norm"),
    )


def _hf_decode_head():
    return rules(
        (r"decode_head\.(?:linear_projections|linear_c)\.(\d)\.proj", r"decoder/proj\1"),
        (r"decode_head\.linear_fuse", "decoder/fuse/conv"),
        (r"decode_head\.batch_norm", "decoder/fuse/norm/bn"),
        (r"decode_head\.classifier", "head/classifier"),
    )


@register_mapping("hf_segformer", models=MODELS)
def hf_segformer():
    """transformers SegformerForSemanticSegmentation (v4 and v5 names)."""
    return chain(prefixed("segformer.", "encoder", hf_mit()), _hf_decode_head())


@register_mapping("hf_mit", encoders=ENCODERS)
def hf_mit_encoder():
    """transformers SegformerModel, or SegformerForImageClassification without its classifier
    (e.g. the nvidia/mit-b* ImageNet weights), onto a mit_b* encoder."""
    return chain(hf_mit(), prefixed("segformer.", "", hf_mit()), rules((r"classifier", IGNORE)))


def smp_mit():
    """smp's MixVisionTransformer(Encoder) names onto a MixTransformer."""
    block = r"block([1-4])\.(\d+)\."

    def in_block(path: str):
        return lambda m: f"stage{int(m.group(1)) - 1}_block{m.group(2)}/{path}"

    def in_stage(path: str):
        return lambda m: f"stage{int(m.group(1)) - 1}{path}"

    return rules(
        (r"patch_embed([1-4])\.proj", in_stage("_patch_embed/conv")),
        (r"patch_embed([1-4])\.norm", in_stage("_patch_embed/norm")),
        (block + r"norm1", in_block("norm1")),
        (block + r"norm2", in_block("norm2")),
        (block + r"attn\.q", in_block("attention/query")),
        (block + r"attn\.kv",
         lambda m: Target(f"stage{int(m.group(1)) - 1}_block{m.group(2)}/attention",
                          split=("key", "value"))),
        (block + r"attn\.proj", in_block("attention/out")),
        (block + r"attn\.sr", in_block("attention/reduce")),
        (block + r"attn\.norm", in_block("attention/reduce_norm")),
        (block + r"mlp\.fc1", in_block("mlp/fc1")),
        (block + r"mlp\.dwconv\.dwconv", in_block("mlp/dwconv")),
        (block + r"mlp\.fc2", in_block("mlp/fc2")),
        (r"norm([1-4])", in_stage("_norm")),
        (r"head", IGNORE),
    )


@register_mapping("smp_mit", encoders=ENCODERS)
def smp_mit_encoder():
    """segmentation_models_pytorch's mit_b* encoder (e.g. smp-hub ImageNet weights)."""
    return smp_mit()


@register_mapping("smp_segformer", models=MODELS)
def smp_segformer():
    """segmentation_models_pytorch Segformer with a mit_b* encoder (style='smp')."""
    stages = len(next(iter(VARIANTS.values()))["depths"])
    return chain(
        prefixed("encoder.", "encoder", smp_mit()),
        rules(
            (r"decoder\.mlp_stage\.(\d)\.linear",
             lambda m: f"decoder/proj{stages - 1 - int(m.group(1))}"),
            (r"decoder\.fuse_stage\.0", "decoder/fuse/conv"),
            (r"decoder\.fuse_stage\.1", "decoder/fuse/norm/bn"),
            (r"segmentation_head\.0", "head/classifier"),
        ),
    )
