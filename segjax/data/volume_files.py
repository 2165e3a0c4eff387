"""Volume files: reading NIfTI, multi-page TIFF and .npy volumes, writing NIfTI.

`read_volume(path)` returns the voxels in the file's storage order (NIfTI:
i, j, k; a TIFF stack: page, row, column; .npy: as saved) with the voxel
spacing and the voxel-to-world affine, so a prediction written back with
`write_nifti(path, labels, affine)` lies on the input's grid. NIfTI goes
through nibabel (spacing from the header's voxel sizes, the affine from its
qform/sform), TIFF stacks through pillow (one page per slice; spacing 1),
`.npy` through NumPy (spacing 1). Every reading error names the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
from pathlib import Path

import numpy as np

NIFTI_SUFFIXES = (".nii.gz", ".nii")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + (".tif", ".tiff", ".npy")


@dataclasses.dataclass(frozen=True)
class Volume:
    """A volume file's voxels (storage order), voxel spacing and voxel-to-world affine."""

    data: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray


def volume_suffix(name: str | Path) -> str | None:
    """'.nii.gz', '.nii', '.tif', '.tiff' or '.npy' (lower case), or None for another file."""
    lower = str(name).lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if lower.endswith(suffix)), None)


def volume_stem(name: str | Path) -> str:
    """The file name without its volume suffix ('BRATS_001.nii.gz' -> 'BRATS_001')."""
    base = Path(name).name
    suffix = volume_suffix(base)
    return base[:-len(suffix)] if suffix else Path(base).stem


def read_volume(path: str | Path, data: bytes | None = None) -> Volume:
    """The volume in file `path` (or in `data`, that file's bytes); ValueError naming it."""
    suffix = volume_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: not a volume file (expected one of "
                         f"{', '.join(VOLUME_SUFFIXES)})")
    reader = {".nii.gz": _read_nifti, ".nii": _read_nifti, ".tif": _read_tiff_stack,
              ".tiff": _read_tiff_stack, ".npy": _read_npy}[suffix]
    try:
        return reader(Path(path) if data is None else data)
    except (OSError, ValueError, EOFError, ImportError) as error:
        raise ValueError(f"{path}: cannot read volume ({type(error).__name__}: {error})") \
            from error
    except Exception as error:  # nibabel raises its own ImageFileError, pillow others
        raise ValueError(f"{path}: cannot read volume ({type(error).__name__}: {error})") \
            from error


def _identity(rank: int = 3) -> tuple[tuple[float, ...], np.ndarray]:
    return (1.0,) * rank, np.eye(4)


def _read_nifti(source: Path | bytes) -> Volume:
    import nibabel  # pylint: disable=import-outside-toplevel  (only NIfTI needs it)

    if isinstance(source, bytes):
        raw = gzip.decompress(source) if source[:2] == b"\x1f\x8b" else source
        image = nibabel.Nifti1Image.from_bytes(raw)
    else:
        image = nibabel.load(str(source))
    data = np.asanyarray(image.dataobj)
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return Volume(np.asarray(data), spacing, np.asarray(image.affine, np.float64))


def _read_tiff_stack(source: Path | bytes) -> Volume:
    from PIL import Image, ImageSequence  # pylint: disable=import-outside-toplevel

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as stack:
        pages = [np.asarray(page.convert("RGB") if page.mode == "P" else page)
                 for page in ImageSequence.Iterator(stack)]
    shapes = {page.shape for page in pages}
    if len(shapes) != 1:
        raise ValueError(f"TIFF pages differ in shape: {sorted(shapes)}")
    spacing, affine = _identity()
    return Volume(np.stack(pages), spacing, affine)


def _read_npy(source: Path | bytes) -> Volume:
    data = np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                   allow_pickle=False)
    spacing, affine = _identity()
    return Volume(np.asarray(data), spacing, affine)


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Writes `array` (e.g. a predicted label volume) as NIfTI with `affine` (default identity)."""
    import nibabel  # pylint: disable=import-outside-toplevel

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    if array.dtype == np.int64 or array.dtype == np.bool_:
        array = array.astype(np.int32 if array.max(initial=0) > 255 else np.uint8)
    image = nibabel.Nifti1Image(array, np.eye(4) if affine is None else np.asarray(affine))
    nibabel.save(image, str(path))
    return path
