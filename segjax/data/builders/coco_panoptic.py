"""tfds builder 'coco_panoptic': COCO 2017 panoptic segmentation (133 classes, 80 things).

With a network, the 2017 images and `panoptic_annotations_trainval2017.zip`
are downloaded from cocodataset.org. Without one, pass a local directory
laid out as those archives extract:

    {train,val}2017/<image id>.jpg
    annotations/panoptic_{train,val}2017.json
    annotations/panoptic_{train,val}2017/<image id>.png

    python -m segjax.data.builders --name coco_panoptic --local_dir DIR --data_dir OUT

Records follow `panoptic_format`: class indices are the 133 categories
sorted by COCO category id (things first: person 0 .. toothbrush 79, then the
53 stuff classes); crowd segments are void.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from segjax.data.builders import panoptic_format

SPLITS = ("train", "val")
URLS = {
    "train_images": "http://images.cocodataset.org/zips/train2017.zip",
    "val_images": "http://images.cocodataset.org/zips/val2017.zip",
    "annotations": ("http://images.cocodataset.org/annotations/"
                    "panoptic_annotations_trainval2017.zip"),
}

_CITATION = """
@inproceedings{kirillov2019panoptic,
  title={Panoptic Segmentation}, author={Kirillov, Alexander and He, Kaiming and
  Girshick, Ross and Rother, Carsten and Doll{\'a}r, Piotr}, booktitle={CVPR}, year={2019}}
@inproceedings{lin2014microsoft,
  title={Microsoft COCO: Common Objects in Context}, author={Lin, Tsung-Yi and others},
  booktitle={ECCV}, year={2014}}
"""


def _downloaded_layout(dl_manager) -> Path:
    """Downloads and extracts COCO into the local layout; returns its root."""
    files = dl_manager.download_and_extract(URLS)
    annotations = Path(files["annotations"]) / "annotations"
    root = Path(files["annotations"])
    for split in SPLITS:
        image_dir = Path(files[f"{split}_images"]) / f"{split}2017"
        link = root / f"{split}2017"
        if not link.exists():
            link.symlink_to(image_dir, target_is_directory=True)
        masks = annotations / f"panoptic_{split}2017"
        if not masks.exists():  # the annotation zip nests one zip of PNGs per split
            extracted = Path(dl_manager.extract(annotations / f"panoptic_{split}2017.zip"))
            masks.symlink_to(extracted / f"panoptic_{split}2017", target_is_directory=True)
    return root


class CocoPanoptic(tfds.core.GeneratorBasedBuilder):
    """COCO 2017 panoptic annotations as encoded image/PNG records (array_record)."""

    name = "coco_panoptic"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images, semantic and instance PNGs from the panoptic format."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional. Without a network, put {train,val}2017/ and annotations/ "
        "(panoptic_{train,val}2017.json and the extracted panoptic_{train,val}2017/ PNG "
        "folders) in the manual dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="COCO 2017 panoptic segmentation: 133 classes (80 things, 53 stuff), "
                        "crowd regions void.",
            features=panoptic_format.record_features(),
            homepage="https://cocodataset.org/#panoptic-2020",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        try:
            root = Path(dl_manager.manual_dir)
        except AssertionError:  # tfds: no (or an empty) manual directory
            root = None
        if root is None or not (root / "annotations").is_dir():
            root = _downloaded_layout(dl_manager)
        generators = {}
        for split in SPLITS:
            data = panoptic_format.read_panoptic_json(
                root / "annotations" / f"panoptic_{split}2017.json")
            self.info.metadata.update(
                class_names=list(panoptic_format.class_names(data["categories"])),
                thing_classes=list(panoptic_format.thing_classes(data["categories"])))
            images = {int(image["id"]): image["file_name"] for image in data.get("images", [])}
            image_dir = root / f"{split}2017"

            def image_path(annotation, image_dir=image_dir, images=images):
                name = images.get(int(annotation["image_id"]),
                                  Path(annotation["file_name"]).with_suffix(".jpg").name)
                return image_dir / name

            generators[split] = self._generate_examples(panoptic_format.examples(
                data, image_path, root / "annotations" / f"panoptic_{split}2017",
                f"coco_panoptic {split}"))
        return generators

    def _generate_examples(self, examples):
        """Passes on the (key, record) pairs of `panoptic_format.examples`."""
        yield from examples
