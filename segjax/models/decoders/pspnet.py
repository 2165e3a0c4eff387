"""PSPNet (Zhao et al. 2017, arXiv:1612.01105): the pyramid pooling decoder and its models.

The "pspnet" decoder is the pyramid pooling module (PPM): the feature at
`in_stride` (default: the deepest) is average-pooled adaptively to 1x1,
2x2, 3x3 and 6x6 bins, each pooled map reduced by a 1x1 conv + BN + ReLU to
`in_channels / 4` (or `bin_channels`) and upsampled bilinearly
(align_corners=True) back to the feature's size; the pooled maps and the
feature are concatenated and fused by a conv + BN + ReLU to `fuse_channels`,
then channel dropout.

Two registered layouts, which differ as smp departs from the paper:
- `pspnet_resnet34` is segmentation_models_pytorch 0.6's `PSPNet("resnet34")`
  (its weights convert one to one, `segjax.convert.smp_pspnet`): smp
  truncates the encoder at stride 8 (`encoder_depth=3`: ResNet-34's layer2,
  128 channels) instead of dilating it; the 1x1 bin has no BN (a 1x1 conv
  with bias + ReLU); the fusion is a 1x1 conv to 512 channels, dropout 0.2,
  and a 3x3 classifier whose scores are upsampled x8 (align_corners=True).
  smp keeps the weights of the unused layer3/layer4 (it only stops calling
  them), so its parameter count includes them; so does this model
  (`ResNet(max_stride=8, build_unused=True)`: built at init, never run).
- `pspnet_resnet50` is the paper's network: the deep-stem ResNet-50 (v1c)
  dilated to output stride 8, BN in every bin (512 channels each on the
  2048-channel feature), a 3x3 conv + BN + ReLU to 512, dropout 0.1 and a 1x1
  classifier; plus the paper's auxiliary FCN-style head on the stride-16
  (layer3, 1024 channels) feature, a 3x3 conv to 256 + BN + ReLU, dropout 0.1,
  1x1 conv, returned as `aux_logits` and weighted by config.loss.aux_weight
  (the paper: 0.4).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.encoders import accepts_option
from segjax.models.registry import build_part, register
from segjax.models.segmenter import FCNHead, SegmentationHead, Segmenter
from segjax.ops import pooling
from segjax.ops.resize import resize

PAPER_BINS = (1, 2, 3, 6)


@register("decoder", "pspnet", paper="Zhao et al. 2017, PSPNet, arXiv:1612.01105")
class PSPDecoder(nn.Module):
    """The pyramid pooling module and its fusion conv (module docstring)."""

    bins: Sequence[int] = PAPER_BINS
    bin_channels: int | None = None
    norm_single_bin: bool = False
    fuse_channels: int = 512
    fuse_kernel: int = 1
    dropout: float = 0.2
    in_stride: int | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        stride = max(features) if self.in_stride is None else self.in_stride
        if stride not in features:
            raise KeyError(f"pspnet decoder: in_stride {stride} is not an encoder stride; "
                           f"encoder strides: {sorted(features)}")
        x = features[stride]
        width = self.bin_channels or x.shape[-1] // len(self.bins)
        pooled = [self._bin(x, bins, width, index, train)
                  for index, bins in enumerate(self.bins)]
        x = jnp.concatenate(pooled + [x], axis=-1)
        x = layers.ConvNormAct(self.fuse_channels, self.fuse_kernel,
                               padding=self.fuse_kernel // 2, dtype=self.dtype,
                               name="fuse")(x, train=train)
        return layers.ChannelDropout(self.dropout)(x, train=train)

    def _bin(self, x, bins: int, width: int, index: int, train: bool):
        """Adaptive average pooling to bins x bins, 1x1 conv (+ BN) + ReLU, upsampling back."""
        norm = "batch" if bins > 1 or self.norm_single_bin else None
        y = layers.ConvNormAct(width, 1, padding=0, norm=norm, dtype=self.dtype,
                               name=f"bin{index}")(pooling.adaptive_avg_pool(x, bins),
                                                   train=train)
        return resize(y, x.shape[1:-1], align_corners=True)


def smp_pspnet(encoder: str = "resnet34", num_classes: int = 1, encoder_stride: int = 8,
               dtype: Any = None) -> Segmenter:
    """smp's `PSPNet(encoder, classes=num_classes)` (encoder_depth 3 = stride 8).

    An encoder that takes `max_stride` (ResNets) stops there and keeps the
    deeper stages' weights unused, as smp; any other runs whole and the
    decoder reads its stride-`encoder_stride` feature (XLA drops the unused
    stages from a compiled forward pass).
    """
    options = {"name": encoder, "dtype": dtype}
    in_stride = encoder_stride
    if accepts_option(encoder, "max_stride"):
        options.update(max_stride=encoder_stride, build_unused=True)
        in_stride = None
    return Segmenter(build_part("encoder", options),
                     PSPDecoder(in_stride=in_stride, dtype=dtype),
                     SegmentationHead(num_classes, 3, dtype=dtype), align_corners=True)


@register("model", "pspnet_resnet34",
          paper="smp PSPNet('resnet34'); Zhao et al. 2017, arXiv:1612.01105",
          input_shape=(1, 256, 256, 3))
def pspnet_resnet34(num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """PSPNet in smp's layout on ResNet-34 truncated at stride 8 (smp's default: 1 class)."""
    return smp_pspnet("resnet34", num_classes, dtype=dtype)


@register("model", "pspnet_resnet50",
          paper="Zhao et al. 2017, PSPNet, arXiv:1612.01105 (the paper's ResNet-50, OS 8, aux)",
          input_shape=(1, 473, 473, 3))
def pspnet_resnet50(num_classes: int = 21, aux: bool = True, output_stride: int = 8,
                    dtype: Any = None) -> Segmenter:
    """The paper's PSPNet: dilated deep-stem ResNet-50, PPM with BN everywhere, 3x3
    fusion, and (`aux`) the auxiliary head on the stride-16 feature (`aux_logits`)."""
    encoder = build_part("encoder", {"name": "resnet50_v1c", "output_stride": output_stride,
                                     "dtype": dtype})
    decoder = PSPDecoder(bin_channels=512, norm_single_bin=True, fuse_kernel=3, dropout=0.1,
                         dtype=dtype)
    return Segmenter(encoder, decoder, SegmentationHead(num_classes, 1, dtype=dtype),
                     FCNHead(num_classes, channels=256, dropout=0.1, dtype=dtype) if aux
                     else None, 16 if aux else None, align_corners=True)
