"""Decoders: map an encoder's stride-keyed feature dict to one feature map.

Each module registers itself with `register("decoder", name)`; the generic
"segmenter" model combines any decoder with any encoder. Decoders that output
class scores (FCN, DeepLab v2's ASPP) take `num_classes` and pair with the
"identity" head.
"""
