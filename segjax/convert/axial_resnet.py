"""Mapping of the official Axial-DeepLab PyTorch checkpoints onto segjax's Axial-ResNet.

'official_axial_resnet': csrhddlam/axial-deeplab's ImageNet networks
(`lib/models/axialnet.py`: `axial26s`, `axial50s`, `axial50m`, `axial50l`;
e.g. the released `axial26s.pth`) into
`segjax.models.encoders.axial_resnet.AxialResNet` built with `stem='conv7'`,
its depths ((1, 2, 4, 1) for 26, (3, 4, 6, 3) for 50), its width multiplier
and `max_input_size=224` (the official `kernel_size`s 56, 28, 14, 7). The
classifier `fc` is dropped.

Module names: `conv1`/`bn1` -> `stem`; `layer{s}.{b}.conv_down`/`bn1` ->
`layer{s}_{b}/conv1`, `conv_up`/`bn2` -> `conv3`/`bn3`, `downsample.{0,1}` ->
`downsample_conv`/`downsample_bn`; `hight_block` (sic) / `width_block` ->
`height_attention` / `width_attention`.

Inside an attention layer the tensors differ by more than a transpose, and
`prepare_official_axial` rewrites them first (G heads, group width
g = out / G, query depth g / 2, value depth g):
- `qkv_transform` (a Conv1d, (2 out, in, 1)) and `bn_qkv` order their output
  channels per head: [query g/2, key g/2, value g] for head 0, then head 1...;
  segjax's `qkv` has every head's query, then every key, then every value.
- `bn_similarity` (3G channels, term-major: qk, qr, kr) -> (3, G).
- `bn_output` (2 out channels) interleaves the two retrieved terms per
  channel (channel c of the output: 2c content, 2c + 1 position) ->
  (2, G, g).
- `relative` ((2g, 2K - 1): query, key and value tables stacked on the
  first axis, offsets on the second) -> `query_rpe`, `key_rpe`,
  `value_rpe` (2K - 1, depth). The official code indexes the query and
  value tables by query position minus key position and the key table by
  key minus query; segjax indexes all three by key minus query, so the
  query and value tables are reversed along the offset axis.
- `flatten_index` (a buffer of the index arithmetic) is dropped.
"""

from __future__ import annotations

import numpy as np

from segjax.convert.core import IGNORE, ConversionError, register_mapping, rules, with_prepare

ATTENTION_SUFFIX = ".bn_similarity.weight"
BN_LEAVES = ("weight", "bias", "running_mean", "running_var")


def qkv_permutation(groups: int, group_width: int) -> np.ndarray:
    """Index into the official per-head [q, k, v] channels of each segjax channel [Q | K | V]."""
    query = group_width // 2
    offsets = np.arange(groups)[:, None] * 2 * group_width
    parts = [offsets + np.arange(query), offsets + query + np.arange(query),
             offsets + 2 * query + np.arange(group_width)]
    return np.concatenate([part.reshape(-1) for part in parts])


def _attention_prefixes(state_dict) -> list[str]:
    return [name[:-len(ATTENTION_SUFFIX)] for name in state_dict
            if name.endswith(ATTENTION_SUFFIX)]


def _tensor(state_dict, name: str) -> np.ndarray:
    if name not in state_dict:
        raise ConversionError(f"official Axial-ResNet checkpoint: {name!r} is missing (an "
                              "attention layer needs qkv_transform, bn_qkv, bn_similarity, "
                              "bn_output and relative)")
    return np.asarray(state_dict[name])


def _prepare_attention(state: dict, prefix: str) -> None:
    """Rewrites one official AxialAttention's tensors (under `prefix`) in place."""
    groups = _tensor(state, prefix + ATTENTION_SUFFIX).shape[0] // 3
    weight = _tensor(state, f"{prefix}.qkv_transform.weight")
    out = weight.shape[0] // 2
    if groups == 0 or out % groups or (out // groups) % 2:
        raise ConversionError(f"{prefix}: {weight.shape[0]} qkv channels do not split into "
                              f"{groups} heads of [query, key, value] with even query depth")
    width = out // groups
    order = qkv_permutation(groups, width)
    state[f"{prefix}.qkv_transform.weight"] = weight.reshape(*weight.shape, 1)[order]
    for leaf in BN_LEAVES:
        name = f"{prefix}.bn_qkv.{leaf}"
        state[name] = _tensor(state, name)[order]
        name = f"{prefix}.bn_similarity.{leaf}"
        state[name] = _tensor(state, name).reshape(3, groups)
        name = f"{prefix}.bn_output.{leaf}"
        state[name] = _tensor(state, name).reshape(groups, width, 2).transpose(2, 0, 1)
    relative = _tensor(state, f"{prefix}.relative")
    if relative.shape[0] != 2 * width:
        raise ConversionError(f"{prefix}.relative {relative.shape}: expected {2 * width} rows "
                              f"(query {width // 2}, key {width // 2}, value {width})")
    query, key, value = np.split(relative, [width // 2, width], axis=0)
    state[f"{prefix}.query_rpe"] = query.T[::-1].copy()
    state[f"{prefix}.key_rpe"] = key.T.copy()
    state[f"{prefix}.value_rpe"] = value.T[::-1].copy()
    del state[f"{prefix}.relative"]
    state.pop(f"{prefix}.flatten_index", None)


def prepare_official_axial(state_dict: dict) -> dict:
    """The official attention tensors in segjax's layout (see the module docstring);
    every other tensor unchanged."""
    state = dict(state_dict)
    for prefix in _attention_prefixes(state):
        _prepare_attention(state, prefix)
    return state


def _attention(match) -> str:
    axis = "height" if match.group(3) == "hight_block" else "width"
    part = {"": "", ".qkv_transform": "/qkv", ".bn_qkv": "/qkv_bn",
            ".bn_similarity": "/similarity_bn", ".bn_output": "/output_bn"}[match.group(4)]
    return f"layer{match.group(1)}_{match.group(2)}/{axis}_attention{part}"


@register_mapping("official_axial_resnet",
                  encoders=("axial_resnet_s", "axial_resnet_m", "axial_resnet_l"))
def official_axial_resnet():
    """csrhddlam/axial-deeplab ImageNet Axial-ResNets (stem 'conv7', max_input_size 224)."""
    return with_prepare(rules(
        (r"conv1", "stem/conv"),
        (r"bn1", "stem/norm/bn"),
        (r"layer(\d)\.(\d+)\.conv_down", r"layer\1_\2/conv1/conv"),
        (r"layer(\d)\.(\d+)\.bn1", r"layer\1_\2/conv1/norm/bn"),
        (r"layer(\d)\.(\d+)\.conv_up", r"layer\1_\2/conv3"),
        (r"layer(\d)\.(\d+)\.bn2", r"layer\1_\2/bn3/bn"),
        (r"layer(\d)\.(\d+)\.downsample\.0", r"layer\1_\2/downsample_conv"),
        (r"layer(\d)\.(\d+)\.downsample\.1", r"layer\1_\2/downsample_bn/bn"),
        (r"layer(\d)\.(\d+)\.(hight_block|width_block)"
         r"(|\.qkv_transform|\.bn_qkv|\.bn_similarity|\.bn_output)", _attention),
        (r"fc", IGNORE),
    ), prepare_official_axial)
