"""tfds builders of the datasets `segjax.data.released` reads in their released layouts.

'cityscapes_semantic', 'ade20k_sceneparsing', 'voc2012_aug', 'coco_stuff164k':
each takes the extracted release as its local directory (there is no
download: Cityscapes needs an account, the others are tens of GB) and writes
the records `segjax.data.builders.folder` defines, {'image': the image
file's bytes, 'label': an 8-bit PNG of the raw label values, 'name'}:

    python -m segjax.data.builders cityscapes_semantic --source DIR [--data_dir OUT]

Raw values are kept (label ids for Cityscapes, 0..150 for ADE20K, 0..181 and
255 for COCO-Stuff), so the "tfds" source maps them with the same
`data.label_values` / `data.ignore_values` as the layout's own source, and
both give the same examples. VOC palette PNGs and SBD `.mat` files are
stored as grey PNGs of their indices. The splits are the layouts' own
(`segjax.data.released`), listed per builder below; the file order is kept
(`disable_shuffling`), so 'train[:100]' selects the same images either way.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from segjax.data import released
from segjax.data.builders import folder


class ReleasedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A released layout's splits as encoded records; subclasses name the dataset."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Image bytes unchanged, labels as PNGs of the raw values."}
    SPLITS: tuple[str, ...] = ()
    DESCRIPTION = ""
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Extract the dataset's release archives and pass the "
                                    "folder holding its layout (segjax.data.released) as the "
                                    "manual dir.")

    @property
    def release(self) -> released.Release:
        return released.get(self.name)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self.DESCRIPTION, features=folder.record_features(),
            homepage=self.release.homepage.split(" ")[0], citation=self.release.citation,
            metadata=tfds.core.MetadataDict(class_names=list(self.release.class_names),
                                            label_values=list(self.release.label_values),
                                            ignore_values=list(self.release.ignore_values)),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        try:
            root = Path(dl_manager.manual_dir)
        except AssertionError as error:  # tfds: no manual directory, or an empty one
            raise FileNotFoundError(f"{self.name}: no local directory; extract "
                                    f"{self.release.homepage} and pass it with --source"
                                    ) from error
        return {split: self._generate_examples(released.entries(self.name, root, split))
                for split in self.SPLITS}

    def _generate_examples(self, entries):
        """(key, record) per entry, in the layout's order."""
        for key, entry in enumerate(entries):
            label = (b"" if entry.label is None
                     else released.label_png_bytes(entry.label, f"{self.name} {entry.label}"))
            yield key, {"image": entry.image.read_bytes(), "label": label, "name": entry.name}


class CityscapesSemantic(ReleasedBuilder):
    """Cityscapes fine annotations (label ids; 19 train-id classes)."""

    name = "cityscapes_semantic"
    SPLITS = ("train", "val", "test")
    DESCRIPTION = ("Cityscapes 2048x1024 street scenes with fine semantic labels (label ids "
                   "0..33; the 19 evaluated classes are those with a train id).")


class Ade20kSceneParsing(ReleasedBuilder):
    """ADE20K SceneParsing (ADEChallengeData2016), 150 classes, 0 = other."""

    name = "ade20k_sceneparsing"
    SPLITS = ("train", "val")
    DESCRIPTION = "ADE20K SceneParsing benchmark: 150 classes (1..150), 0 = other (ignored)."


class Voc2012Aug(ReleasedBuilder):
    """PASCAL VOC 2012 segmentation with SBD's augmented training set."""

    name = "voc2012_aug"
    SPLITS = ("train_aug", "train", "val")
    DESCRIPTION = ("PASCAL VOC 2012 semantic segmentation (21 classes, 255 void) with the "
                   "10,582-image train_aug set from SBD.")


class CocoStuff164k(ReleasedBuilder):
    """COCO-Stuff-164k stuff+thing maps (0..181, 255 unlabelled; 171 classes used)."""

    name = "coco_stuff164k"
    SPLITS = ("train", "val")
    DESCRIPTION = "COCO-Stuff-164k: 80 thing and 91 stuff classes on COCO 2017 train/val."
