"""Mapping of transformers' `DPTForSemanticSegmentation` onto `dpt_vit_b16`, `dpt_vit_l16`,
`dpt_hybrid` (the names of the published `Intel/dpt-*` checkpoints; unchanged in
transformers 5).

transformers -> segjax:

    dpt.embeddings.{cls_token,position_embeddings}     encoder/vit/...
    dpt.embeddings.patch_embeddings.projection         encoder/patch_embed
    dpt.embeddings.projection (hybrid)                 encoder/patch_embed
    dpt.embeddings.backbone.bit.* (hybrid)             encoder/backbone/... (BiT ResNet)
    dpt.encoder.layer.{i}.attention.attention.{query,key,value}, .attention.output.dense,
    .layernorm_before/after, .intermediate.dense, .output.dense (or the ViT names
    transformers 5 writes, `segjax.convert.vit.hf_vit_blocks`)
                                                       encoder/vit/block{i}/...
    dpt.layernorm                                      encoder/vit/norm
    neck.reassemble_stage.readout_projects.{i}.0      encoder/reassemble{i}/readout
    neck.reassemble_stage.layers.{i}.projection       encoder/reassemble{i}/projection
    neck.reassemble_stage.layers.{i}.resize           encoder/reassemble{i}/upsample (i < 2,
                                                       a transposed conv) or /downsample
    neck.convs.{i}                                     decoder/conv{i}
    neck.fusion_stage.layers.{j}.residual_layer{k}.{convolution,batch_norm}{m}
                                                       decoder/fusion{j}/residual{k}/...
    neck.fusion_stage.layers.{j}.projection           decoder/fusion{j}/projection
    head.head.{0,1,4}, auxiliary_head.head.{0,1,4}     head/..., aux_head/... (FCNHead)

The resize rule follows DPT's factors (4, 2, 1, 0.5): the first two
reassembled maps are upsampled by transposed convolutions, the last is
downsampled. A configuration that differs is not converted silently: its
tensors find no variable and strict conversion lists them.
"""

from __future__ import annotations

from segjax.convert.core import Target, chain, prefixed, register_mapping, rules
from segjax.convert.vit import hf_vit_blocks

MODELS = ("dpt_vit_b16", "dpt_vit_l16", "dpt_hybrid")

def _bit_stage_layer(match) -> str:
    """BiT `stages.{s}.layers.{b}.{conv,norm}{k}` / `downsample.{conv,norm}` -> the ResNet's."""
    stage, block, part = int(match.group(1)) + 1, match.group(2), match.group(3)
    base = f"layer{stage}_{block}"
    names = {"downsample.conv": "downsample_conv", "downsample.norm": "downsample_bn/gn"}
    if part in names:
        return f"{base}/{names[part]}"
    kind, index = part[:-1], part[-1]
    return f"{base}/conv{index}" if kind == "conv" else f"{base}/bn{index}/gn"


def hf_bit_backbone():
    """transformers' BitBackbone (layer_type='bottleneck') onto ResNet(style='bit')."""
    return rules(
        (r"bit\.embedder\.convolution", "conv1"),
        (r"bit\.embedder\.norm", "bn1/gn"),
        (r"bit\.encoder\.stages\.(\d)\.layers\.(\d+)\.(conv[123]|norm[123]|downsample\.conv|"
         r"downsample\.norm)", _bit_stage_layer),
    )


def _resize(match):
    index = int(match.group(1))
    if index < 2:
        return Target(f"encoder/reassemble{index}/upsample", transposed=True)
    return f"encoder/reassemble{index}/downsample"


def _fcn_head(torch_prefix: str, flax_prefix: str):
    return (
        (torch_prefix + r"\.head\.0", flax_prefix + "/block/conv"),
        (torch_prefix + r"\.head\.1", flax_prefix + "/block/norm/bn"),
        (torch_prefix + r"\.head\.4", flax_prefix + "/classifier"),
    )


@register_mapping("hf_dpt", models=MODELS)
def hf_dpt():
    """transformers DPTForSemanticSegmentation (ViT-B/L, and DPT-Hybrid's BiT + ViT)."""
    fusion = r"neck\.fusion_stage\.layers\.(\d)\."
    return chain(
        prefixed("dpt.embeddings.backbone.", "encoder/backbone", hf_bit_backbone()),
        rules(
            (r"dpt\.embeddings", "encoder/vit"),
            (r"dpt\.embeddings\.(?:patch_embeddings\.)?projection", "encoder/patch_embed"),
            *hf_vit_blocks(r"dpt\.", "encoder/vit"),
            (r"dpt\.layernorm", "encoder/vit/norm"),
            (r"neck\.reassemble_stage\.readout_projects\.(\d)\.0",
             r"encoder/reassemble\1/readout"),
            (r"neck\.reassemble_stage\.layers\.(\d)\.projection",
             r"encoder/reassemble\1/projection"),
            (r"neck\.reassemble_stage\.layers\.(\d)\.resize", _resize),
            (r"neck\.convs\.(\d)", r"decoder/conv\1"),
            (fusion + r"residual_layer([12])\.convolution([12])",
             r"decoder/fusion\1/residual\2/conv\3"),
            (fusion + r"residual_layer([12])\.batch_norm([12])",
             r"decoder/fusion\1/residual\2/norm\3/bn"),
            (fusion + r"projection", r"decoder/fusion\1/projection"),
            *_fcn_head(r"head", "head"),
            *_fcn_head(r"auxiliary_head", "aux_head"),
        ),
    )
