"""The canon at a small width, one entry per registered 2D family, for the export checks.

`CANON[family]` is a `Family`: a `config.model` dict that builds the
family's network (its registered model, or the generic "segmenter" with the
family's decoder and head) with narrow layers, and the input sizes it
allows: `sizes[0]` is the size the static exports are made at, `sizes[1]` a
second, larger size that a dynamic export never saw. Both are non-square.
The export checks across formats read this table (the family x format table of
docs/export.md is still to be generated from it);
every architectural feature of a family (dilations, poolings, attention,
resizes with or without aligned corners, transposed convolutions, Caffe
crops) stays, only widths and block counts shrink.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Family(NamedTuple):
    model: dict[str, Any]
    sizes: tuple[tuple[int, int], tuple[int, int]] = ((64, 96), (96, 128))
    channels: int = 3


NUM_CLASSES = 5
# A ResNet with every code path of ResNet-18/34 (stem, max pool, basic blocks, projections).
TINY_RESNET = {"name": "resnet18", "widths": (8, 8, 16, 16), "stage_sizes": (1, 1, 1, 1),
               "stem_width": 8}
TINY_RESNET50 = {"name": "resnet50", "widths": (4, 4, 8, 8), "stage_sizes": (1, 1, 1, 1),
                 "stem_width": 8}
TINY_VGG = {"widths": (4, 8, 8, 16, 16), "fc_features": 16}


def _segmenter(encoder: dict, decoder: dict, **options) -> dict:
    return {"name": "segmenter", "num_classes": NUM_CLASSES, "encoder": encoder,
            "decoder": decoder, **options}


CANON: dict[str, Family] = {
    "fcn8s": Family({"name": "fcn8s", "num_classes": NUM_CLASSES, "encoder_options": TINY_VGG}),
    "deeplabv1": Family(_segmenter({"name": "vgg16", "output_stride": 8, **TINY_VGG},
                                   {"name": "largefov", "features": 16}, align_corners=True)),
    "deeplabv2": Family(_segmenter({**TINY_RESNET50, "output_stride": 8},
                                   {"name": "aspp_l", "num_classes": NUM_CLASSES},
                                   head={"name": "identity"}, align_corners=True)),
    "deeplabv3": Family(_segmenter({**TINY_RESNET50, "output_stride": 16,
                                    "multi_grid": (1,)},
                                   {"name": "deeplabv3", "features": 16})),
    "deeplabv3plus": Family({"name": "deeplabv3plus_mobilenetv2", "num_classes": NUM_CLASSES,
                             "encoder_options": {"width_multiplier": 0.25,
                                                 "include_last_conv": False}}),
    "unet": Family({"name": "unet", "num_classes": NUM_CLASSES, "width": 4, "depth": 3,
                    "padding": "same"}, channels=1),
    "unet_valid": Family({"name": "unet", "num_classes": NUM_CLASSES, "width": 4, "depth": 2,
                          "padding": "valid"}, sizes=((92, 108), (124, 140)), channels=1),
    "unetplusplus": Family({"name": "unetplusplus", "num_classes": NUM_CLASSES,
                            "filters": (4, 8, 8, 16, 16)}, channels=1),
    "linknet": Family(_segmenter(TINY_RESNET, {"name": "linknet", "prefinal_channels": 8})),
    "fpn": Family(_segmenter(TINY_RESNET, {"name": "fpn", "pyramid_channels": 16,
                                           "segmentation_channels": 8, "num_groups": 4},
                             align_corners=True)),
    "pspnet": Family(_segmenter({**TINY_RESNET, "max_stride": 8, "build_unused": True},
                                {"name": "pspnet", "fuse_channels": 16},
                                head={"name": "conv", "kernel_size": 3}, align_corners=True)),
    # PAN's pyramid attention pools the stride-32 map three times: 256 leaves 1x1.
    "pan": Family(_segmenter(TINY_RESNET, {"name": "pan", "features": 8}),
                  sizes=((256, 320), (320, 384))),
    "manet": Family(_segmenter(TINY_RESNET, {"name": "manet", "decoder_channels": (16, 8, 8, 8, 8),
                                             "pab_channels": 8})),
    "upernet": Family(_segmenter(TINY_RESNET, {"name": "upernet", "features": 16})),
    "cgnet": Family({"name": "cgnet", "num_classes": NUM_CLASSES, "stage2_blocks": 2,
                     "stage3_blocks": 2}),
    "segformer": Family(_segmenter({"name": "mit_b0", "widths": (8, 16, 24, 32),
                                    "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 2)},
                                   {"name": "segformer", "features": 16})),
    "dpt": Family(_segmenter({"name": "dpt_vit_b16", "hidden_size": 32, "depth": 4,
                              "num_heads": 2, "mlp_dim": 64, "out_layers": (0, 1, 2, 3),
                              "reassemble_features": (8, 8, 16, 16), "image_size": 64},
                             {"name": "dpt", "features": 16},
                             head={"name": "fcn", "channels": 8}, align_corners=True)),
    "axial_deeplab": Family({"name": "axial_deeplab_s", "num_classes": NUM_CLASSES,
                             "encoder_options": {"width_multiplier": 0.125, "depths": (1, 1, 1, 1)},
                             "decoder_options": {"aspp_features": 16, "semantic_features": 16,
                                                 "semantic_low_level_features": (8, 8)}}),
    "panoptic_deeplab": Family({"name": "panoptic_deeplab_resnet50", "num_classes": NUM_CLASSES,
                                "encoder_options": {k: v for k, v in TINY_RESNET50.items()
                                                    if k != "name"},
                                "decoder_options": {
                                    "aspp_features": 16, "semantic_features": 16,
                                    "instance_features": 8, "semantic_low_level_features": (8, 8),
                                    "instance_low_level_features": (8, 4),
                                    "instance_head_channels": 8}}),
}
