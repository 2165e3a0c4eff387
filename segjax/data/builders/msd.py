"""tfds builder 'msd_brain_tumour': the Medical Segmentation Decathlon's Task01_BrainTumour.

Task01 is BraTS 2016/2017 data (the challenge No New-Net was built for) as the
Decathlon distributes it: 484 training volumes with labels (imagesTr/,
labelsTr/) and 266 test volumes without (imagesTs/), each a 240x240x155
NIfTI of 4 co-registered, skull-stripped MRI modalities stored channels last
(FLAIR, T1w, T1gd, T2w) at 1 mm isotropic spacing; labels 0 background,
1 edema, 2 non-enhancing tumour, 3 enhancing tumour. Licence CC-BY-SA 4.0.

Splits: 'train' (labelled) and 'test' (unlabelled). Records hold the
.nii.gz files' bytes unchanged ({'image', 'label' (b'' for test), 'name'}),
so voxel spacing and affine travel with them; `segjax.data.volume_sources`'
'tfds_volume' source decodes them with nibabel, without TensorFlow.

With a network the task's tar is downloaded from the Decathlon's public
bucket (the one MONAI's DecathlonDataset reads). Without one, pass the
extracted task folder (or a folder holding it) as the local directory:

    python -m segjax.data.builders --name msd_brain_tumour \\
        --local_dir DIR/Task01_BrainTumour --data_dir OUT

and read it with config.data.source='tfds_volume', data.tfds_name=
'msd_brain_tumour', data.root=OUT. The tar holds macOS metadata files
('._BRATS_001.nii.gz'); they are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import tensorflow_datasets as tfds

from segjax.data.builders import folder
from segjax.data.sources import sort_names

TASK = "Task01_BrainTumour"
URL = f"https://msd-for-monai.s3-us-west-2.amazonaws.com/{TASK}.tar"
HOMEPAGE = "http://medicaldecathlon.com/"
CLASS_NAMES = ("background", "edema", "non-enhancing tumour", "enhancing tumour")
SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", None)}

_CITATION = """
@article{antonelli2022medical,
  title={The Medical Segmentation Decathlon},
  author={Antonelli, Michela and Reinke, Annika and Bakas, Spyridon and others},
  journal={Nature Communications}, volume={13}, pages={4128}, year={2022}}
@article{simpson2019large,
  title={A large annotated medical image dataset for the development and evaluation of
         segmentation algorithms},
  author={Simpson, Amber L and Antonelli, Michela and Bakas, Spyridon and others},
  journal={arXiv preprint arXiv:1902.09063}, year={2019}}
"""


def task_dir(root: Path) -> Path | None:
    """`root` itself when it holds imagesTr/, else `root/Task01_BrainTumour` when that does."""
    for candidate in (root, root / TASK):
        if (candidate / "imagesTr").is_dir():
            return candidate
    return None


def _nifti_files(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in directory.iterdir()
            if p.is_file() and p.name.endswith(".nii.gz") and not p.name.startswith(".")}


def task_examples(task: Path, split: str) -> Iterator[tuple[int, dict]]:
    """(key, record) for every volume of `split` in an extracted task folder, sorted by name."""
    image_folder, label_folder = SPLIT_FOLDERS[split]
    images = _nifti_files(task / image_folder)
    labels = _nifti_files(task / label_folder) if label_folder else {}
    for key, name in enumerate(sort_names(list(images))):
        label = b""
        if label_folder:
            if name not in labels:
                raise FileNotFoundError(f"{images[name]} has no label {task / label_folder / name}")
            label = labels[name].read_bytes()
        yield key, {"image": images[name].read_bytes(), "label": label, "name": name}


class MsdBrainTumour(tfds.core.GeneratorBasedBuilder):
    """Medical Segmentation Decathlon Task01_BrainTumour as NIfTI bytes (array_record)."""

    name = "msd_brain_tumour"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The task's .nii.gz files unchanged; train (labelled), test."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Optional. Without a network, extract {TASK}.tar and pass the {TASK} folder "
        "(imagesTr/, labelsTr/, imagesTs/) or a folder holding it as the manual dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="BraTS brain tumour MRI (FLAIR, T1w, T1gd, T2w; 240x240x155, 1 mm) "
                        "with labels background / edema / non-enhancing tumour / enhancing "
                        "tumour, as the Medical Segmentation Decathlon's Task01.",
            features=folder.record_features(),
            homepage=HOMEPAGE,
            citation=_CITATION,
            disable_shuffling=True)  # keep name order: "train[:400]" means the first 400

    def _split_generators(self, dl_manager):
        task = None
        try:
            task = task_dir(Path(dl_manager.manual_dir))
        except AssertionError:  # tfds: no manual directory, or an empty one
            task = None
        if task is None:
            task = task_dir(Path(dl_manager.download_and_extract(URL)))
            if task is None:
                raise FileNotFoundError(f"{URL} did not extract to a folder with imagesTr/")
        splits = [split for split, (images, _) in SPLIT_FOLDERS.items()
                  if (task / images).is_dir()]
        return {split: self._generate_examples(task_examples(task, split)) for split in splits}

    def _generate_examples(self, examples):
        """Passes on the (key, record) pairs of the task folder."""
        yield from examples
