"""tfds builders for segjax's datasets, and `prepare` to build one from a local folder.

    from segjax.data.builders import prepare
    prepare("isbi2012_em", local_dir="../shared/data/isbi2012_em", data_dir="~/tensorflow_datasets")

or from the shell:

    python -m segjax.data.builders camvid --source DIR [--data_dir OUT]

With `local_dir` the builder reads the folder layout FolderSource reads
(<split>/images, <split>/labels; the panoptic builders read their datasets'
own layouts, see their modules) and needs no network; without it, it
downloads from the dataset's public location. The result is array_record
files that `tfds.data_source(name, split=..., data_dir=OUT)` (and
`segjax.data.sources.TfdsSource`, config data.source='tfds'; volumes:
`segjax.data.volume_sources.TfdsVolumeSource`, data.source='tfds_volume') read with
random access and without TensorFlow. 'msd_brain_tumour' (the Medical
Segmentation Decathlon's Task01, NIfTI volumes) takes the extracted task
folder as its local directory. 'cityscapes_semantic', 'ade20k_sceneparsing',
'voc2012_aug' and 'coco_stuff164k' take the extracted releases in the layouts
`segjax.data.released` reads (`builders.released`).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from segjax.data.builders.camvid import Camvid
from segjax.data.builders.cityscapes_panoptic import CityscapesPanoptic
from segjax.data.builders.coco_panoptic import CocoPanoptic
from segjax.data.builders.isbi2012 import Isbi2012Em
from segjax.data.builders.msd import MsdBrainTumour
from segjax.data.builders.released import (Ade20kSceneParsing, CityscapesSemantic,
                                           CocoStuff164k, Voc2012Aug)

BUILDERS = {"isbi2012_em": Isbi2012Em, "camvid": Camvid, "msd_brain_tumour": MsdBrainTumour,
            "cityscapes_panoptic": CityscapesPanoptic, "coco_panoptic": CocoPanoptic,
            "cityscapes_semantic": CityscapesSemantic, "ade20k_sceneparsing": Ade20kSceneParsing,
            "voc2012_aug": Voc2012Aug, "coco_stuff164k": CocoStuff164k}


def prepare(name: str, local_dir: str | Path | None, data_dir: str | Path) -> Path:
    """Build dataset `name` into `data_dir` (from `local_dir` if given); returns its folder."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(sorted(BUILDERS))}")
    if local_dir is not None and not Path(local_dir).is_dir():
        raise FileNotFoundError(f"local_dir {str(local_dir)!r} is not a directory")
    builder = BUILDERS[name](data_dir=str(Path(data_dir).expanduser()),
                             file_format="array_record")
    download_config = tfds.download.DownloadConfig(
        manual_dir=str(Path(local_dir).resolve()) if local_dir is not None else None)
    builder.download_and_prepare(download_config=download_config)
    return Path(builder.data_dir)
