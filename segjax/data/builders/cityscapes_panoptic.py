"""tfds builder 'cityscapes_panoptic': Cityscapes' panoptic ground truth (19 classes, 8 things).

Cityscapes needs an account (https://www.cityscapes-dataset.com), so there is
no download: pass the local directory holding

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/cityscapes_panoptic_{train,val}.json
    gtFine/cityscapes_panoptic_{train,val}/<city>_<seq>_<frame>_gtFine_panoptic.png

(the last two are written by cityscapesscripts' `createPanopticImgs`) as
the manual directory:

    python -m segjax.data.builders --name cityscapes_panoptic --local_dir DIR --data_dir OUT

Records follow `panoptic_format`: class indices are the categories sorted by
Cityscapes label id, which is the usual train-id order (road 0 .. bicycle
18; things person 11 .. bicycle 18); crowd groups ("cargroup") are void.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from segjax.data.builders import panoptic_format

SPLITS = ("train", "val")
CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
               "bus", "train", "motorcycle", "bicycle")
THING_CLASSES = tuple(range(11, 19))

_CITATION = """
@inproceedings{cordts2016cityscapes,
  title={The Cityscapes Dataset for Semantic Urban Scene Understanding},
  author={Cordts, Marius and Omran, Mohamed and Ramos, Sebastian and Rehfeld, Timo and
          Enzweiler, Markus and Benenson, Rodrigo and Franke, Uwe and Roth, Stefan and
          Schiele, Bernt},
  booktitle={CVPR}, year={2016}}
"""


def _image_path(root: Path, split: str):
    def find(annotation: dict) -> Path:
        stem = str(annotation["image_id"])
        return root / "leftImg8bit" / split / stem.split("_")[0] / f"{stem}_leftImg8bit.png"
    return find


class CityscapesPanoptic(tfds.core.GeneratorBasedBuilder):
    """Cityscapes fine panoptic annotations as encoded PNG records (array_record)."""

    name = "cityscapes_panoptic"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images, semantic and instance PNGs from the panoptic format."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com, run cityscapesscripts' createPanopticImgs, and "
        "put leftImg8bit/ and gtFine/ (with cityscapes_panoptic_{train,val}.json and folders) "
        "in the manual dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Cityscapes 2048x1024 street scenes with panoptic labels: 19 classes "
                        "(11 stuff, 8 things), crowd regions void.",
            features=panoptic_format.record_features(),
            homepage="https://www.cityscapes-dataset.com",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(class_names=list(CLASS_NAMES),
                                            thing_classes=list(THING_CLASSES)),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        generators = {}
        for split in SPLITS:
            gt = root / "gtFine"
            data = panoptic_format.read_panoptic_json(gt / f"cityscapes_panoptic_{split}.json")
            if panoptic_format.class_names(data["categories"]) != CLASS_NAMES:
                raise ValueError(f"{gt}: the panoptic JSON's categories are not Cityscapes' 19 "
                                 "evaluation classes")
            generators[split] = self._generate_examples(panoptic_format.examples(
                data, _image_path(root, split), gt / f"cityscapes_panoptic_{split}",
                f"cityscapes_panoptic {split}"))
        return generators

    def _generate_examples(self, examples):
        """Passes on the (key, record) pairs of `panoptic_format.examples`."""
        yield from examples
