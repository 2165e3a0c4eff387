"""tfds builder 'isbi2012_em': the ISBI 2012 EM segmentation challenge (U-Net paper's data).

Splits: 'train' (30 labelled 512x512 slices; raw label 0 = membrane, 255 =
cell interior) and 'test' (30 slices, no labels: the challenge never released
them; hold out part of train for validation, e.g. 'train[25:30]').

With a network, the challenge's three multi-page TIFF stacks are downloaded
and split into per-slice PNGs named 0.png .. 29.png. Without one, pass a
local directory laid out as ../shared/data/isbi2012_em (train/images,
train/labels, test/images) as the manual directory:

    python -m segjax.data.builders --name isbi2012_em --local_dir DIR --data_dir OUT
"""

from __future__ import annotations

from typing import Iterator

import tensorflow_datasets as tfds
from PIL import Image, ImageSequence

from segjax.data.builders import folder

_BASE_URL = "http://brainiac2.mit.edu/isbi_challenge/sites/default/files/"
URLS = {
    "train_images": _BASE_URL + "train-volume.tif",
    "train_labels": _BASE_URL + "train-labels.tif",
    "test_images": _BASE_URL + "test-volume.tif",
}

_CITATION = """
@article{arganda2015crowdsourcing,
  title={Crowdsourcing the creation of image segmentation algorithms for connectomics},
  author={Arganda-Carreras, Ignacio and Turaga, Srinivas C and Berger, Daniel R and others},
  journal={Frontiers in Neuroanatomy}, volume={9}, pages={142}, year={2015}}
@article{cardona2010integrated,
  title={An Integrated Micro- and Macroarchitectural Analysis of the Drosophila Brain by
         Computer-Assisted Serial Section Electron Microscopy},
  author={Cardona, Albert and Saalfeld, Stephan and Preibisch, Stephan and Schmid, Benjamin and
          Cheng, Anchi and Pulokas, Jim and Tomancak, Pavel and Hartenstein, Volker},
  journal={PLoS Biology}, volume={8}, number={10}, pages={e1000502}, year={2010}}
"""


def _stack_examples(image_tif, label_tif) -> Iterator[tuple[int, dict]]:
    with Image.open(image_tif) as images:
        pages = [page.copy() for page in ImageSequence.Iterator(images)]
    label_pages = [None] * len(pages)
    if label_tif is not None:
        with Image.open(label_tif) as labels:
            label_pages = [page.copy() for page in ImageSequence.Iterator(labels)]
        if len(label_pages) != len(pages):
            raise ValueError(f"{label_tif} has {len(label_pages)} slices, {image_tif} has "
                             f"{len(pages)}")
    for index, (image, label) in enumerate(zip(pages, label_pages)):
        yield index, {"image": folder.png_bytes(image.convert("L")),
                      "label": b"" if label is None else folder.png_bytes(label.convert("L")),
                      "name": f"{index}.png"}


class Isbi2012Em(tfds.core.GeneratorBasedBuilder):
    """ISBI 2012 EM stacks as encoded PNG records (array_record)."""

    name = "isbi2012_em"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Per-slice PNG bytes; train (labelled) and test (unlabelled)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional. Without a network, put train/images/*.png, train/labels/*.png and "
        "test/images/*.png (per-slice PNGs, same names for image and label) in the manual dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="ISBI 2012 EM segmentation challenge: ssTEM slices of the Drosophila "
                        "larva ventral nerve cord, labelled membrane (0) / cell interior (255).",
            features=folder.record_features(),
            homepage="http://brainiac2.mit.edu/isbi_challenge/",
            citation=_CITATION,
            disable_shuffling=True)  # keep file order: "train[25:30]" means files 25..29

    def _split_generators(self, dl_manager):
        local = {split: folder.local_split_dir(dl_manager, split) for split in ("train", "test")}
        if all(local.values()):
            examples = {split: folder.folder_examples(
                path / "images", path / "labels" if (path / "labels").is_dir() else None)
                for split, path in local.items()}
        else:
            files = dl_manager.download(URLS)
            examples = {"train": _stack_examples(files["train_images"], files["train_labels"]),
                        "test": _stack_examples(files["test_images"], None)}
        return {split: self._generate_examples(pairs) for split, pairs in examples.items()}

    def _generate_examples(self, examples):
        """Passes on the (key, record) pairs _split_generators chose (local or downloaded)."""
        yield from examples
