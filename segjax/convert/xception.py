"""Mapping of timm's `xception65` (aligned Xception-65, ported from DeepLab's TF
weights) onto `segjax.models.encoders.xception.Xception`; `head.*` is dropped."""

from __future__ import annotations

from segjax.convert.core import IGNORE, register_mapping, rules


@register_mapping("timm_xception", encoders=("xception65",))
def timm_xception():
    """timm xception65 (XceptionAligned)."""
    return rules(
        (r"stem\.(\d)\.conv", r"stem_\1/conv"),
        (r"stem\.(\d)\.bn", r"stem_\1/norm/bn"),
        (r"blocks\.(\d+)\.stack\.conv(\d)\.conv_dw", r"blocks_\1/conv\2/depthwise/conv"),
        (r"blocks\.(\d+)\.stack\.conv(\d)\.bn_dw", r"blocks_\1/conv\2/depthwise/norm/bn"),
        (r"blocks\.(\d+)\.stack\.conv(\d)\.conv_pw", r"blocks_\1/conv\2/pointwise/conv"),
        (r"blocks\.(\d+)\.stack\.conv(\d)\.bn_pw", r"blocks_\1/conv\2/pointwise/norm/bn"),
        (r"blocks\.(\d+)\.shortcut\.conv", r"blocks_\1/shortcut/conv"),
        (r"blocks\.(\d+)\.shortcut\.bn", r"blocks_\1/shortcut/norm/bn"),
        (r"head(\..*)?", IGNORE),
    )
