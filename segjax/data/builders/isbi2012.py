"""tfds builder 'isbi2012_em': the ISBI 2012 EM segmentation challenge (U-Net paper's data).

Splits: 'train' (30 labelled 512x512 slices; raw label 0 = membrane, 255 =
cell interior) and 'test' (30 slices, no labels: the challenge never released
them; hold out part of train for validation, e.g. 'train[25:30]').

With a network, the per-slice PNGs are downloaded from the location that
serves them today (`segjax.data.datasets`: github.com/zhixuhao/unet at a fixed
commit; the challenge's own site and its multi-page TIFF stacks are offline).
Without one, pass a local directory laid out as ../shared/data/isbi2012_em
(train/images, train/labels, test/images) as the manual directory:

    python -m segjax.data.builders --name isbi2012_em --local_dir DIR --data_dir OUT
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from segjax.data import datasets
from segjax.data.builders import folder

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
            homepage="https://github.com/zhixuhao/unet",
            citation=_CITATION,
            disable_shuffling=True)  # keep file order: "train[25:30]" means files 25..29

    def _split_generators(self, dl_manager):
        local = {split: folder.local_split_dir(dl_manager, split) for split in ("train", "test")}
        if all(local.values()):
            examples = {split: folder.folder_examples(
                path / "images", path / "labels" if (path / "labels").is_dir() else None)
                for split, path in local.items()}
        else:
            root = download(dl_manager)
            examples = {"train": folder.folder_examples(root / "train" / "images",
                                                        root / "train" / "labels"),
                        "test": folder.folder_examples(root / "test" / "images", None)}
        return {split: self._generate_examples(pairs) for split, pairs in examples.items()}

    def _generate_examples(self, examples):
        """Passes on the (key, record) pairs _split_generators chose (local or downloaded)."""
        yield from examples


def download(dl_manager) -> Path:
    """Every slice from `segjax.data.datasets`' public location, as <split>/images|labels."""
    dataset = datasets.get("isbi2012_em")
    files = dataset.files(dataset.url)
    paths = dl_manager.download({local: dataset.url + remote for remote, local in files})
    root = Path(dl_manager.download_dir) / "isbi2012_em_layout"
    for local, downloaded in paths.items():
        target = root / local
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(Path(downloaded).resolve())
    return root
