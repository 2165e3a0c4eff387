"""Pretrained weights in one line: presets that download, verify, convert and load.

    from segjax import pretrained
    model, variables = pretrained.load("segformer_b0.nvidia_ade20k")
    labels = pretrained.load("segformer_b0.nvidia_ade20k").predict("photo.jpg")
    pretrained.load("resnet50.tv_in1k")                         # an encoder
    pretrained.load("segformer_b2.nvidia_cityscapes", num_classes=11)   # new heads
    config.model.init_from = "preset:resnet50.tv_in1k"           # training
    config.model.init_from_part = "encoder"

- `presets`: the table (`PRESETS`, `Preset`, `Normalization`, `Source`), plain
  data; `UNAVAILABLE` names the families without weights and why.
- `download`: Hub (huggingface_hub, `HF_ENDPOINT`) and HTTPS (urllib) fetching,
  SHA-256 verification, the cache under $SEGJAX_CACHE, offline mode.
- `weights`: conversion through the preset's `segjax.convert` mapping and the
  merge into a model: class-count changes, input-channel adaptation.
- `loading`: `load`, `init_from` (training), `configure`/`use` (configs).
- `python -m segjax.pretrained` lists the presets (docs/pretrained.md is its
  `--markdown` output).
"""

from segjax.pretrained.download import (DownloadError, IntegrityError,  # noqa: F401
                                        OfflineError, offline)
from segjax.pretrained.loading import (Pretrained, configure, init_from,  # noqa: F401
                                       is_spec, load, match, preset_config, resolve, use)
from segjax.pretrained.presets import (PRESETS, UNAVAILABLE, Normalization,  # noqa: F401
                                       Preset, Source, get, names)
from segjax.pretrained.weights import PretrainedError, adapt_input_kernel  # noqa: F401
