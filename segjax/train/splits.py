"""The files of a run's splits, recorded in the workdir: a resume on a changed folder is refused.

A split written as a slice ('train[:25]') selects files by position, so a
file added to or removed from the folder moves what every later slice holds.
`check_and_record(config, workdir, resumed_step)` lists the files each split
of config.data selects (`segjax.data.sources.split_files`; sources that do
not read files, such as the synthetic one, record nothing) and writes them to
`workdir/splits.json` beside config.json. A resumed run compares first: when
a split is written as before but selects other files, the resume is refused
with `SplitsChanged` naming the added and missing files, before anything is
written (config.train.allow_config_change=True turns the refusal into a
warning and records the new files). A split written differently is a config
change: its new files are recorded.
"""

from __future__ import annotations

import json

from segjax import paths
from segjax.train.checkpoint import CheckpointError

SPLITS_FILE = "splits.json"
SPLIT_KEYS = ("train_split", "val_split")


class SplitsChanged(CheckpointError):
    """A resumed run's split selects other files than when its checkpoints were written."""


def manifest(data_config) -> dict:
    """{'data.train_split': {'split': 'train[:25]', 'files': [...]}, ...} of file sources."""
    from segjax.data import sources
    record = {}
    for key in SPLIT_KEYS:
        split = str(data_config.get(key, "") or "")
        if not split:
            continue
        files = sources.split_files(sources.make_source(data_config, split))
        if files is not None:
            record[f"data.{key}"] = {"split": split, "files": files}
    return record


def _difference(key: str, before: dict, after: dict) -> str | None:
    """One clause naming the files a split gained and lost, or None when it is the same."""
    if before["files"] == after["files"]:
        return None
    old, new = set(before["files"]), set(after["files"])
    added = [name for name in after["files"] if name not in old]
    missing = [name for name in before["files"] if name not in new]
    parts = []
    if added:
        parts.append(f"added {len(added)}: {', '.join(added[:10])}")
    if missing:
        parts.append(f"missing {len(missing)}: {', '.join(missing[:10])}")
    return (f"{key} {after['split']!r} ({'; '.join(parts) or 'the same files in another order'})")


def check_and_record(config, workdir, resumed_step: int, *, write: bool = True,
                     log=print) -> dict:
    """Refuses a resume whose splits select other files (see the module docstring); writes
    the current files to workdir/splits.json when `write`. Returns the record."""
    path = paths.as_path(workdir) / SPLITS_FILE
    current = manifest(config.data)
    if resumed_step and path.is_file():
        stored = json.loads(path.read_text())
        changes = [change for key, now in current.items()
                   if key in stored and stored[key].get("split") == now["split"]
                   and (change := _difference(key, stored[key], now))]
        if changes:
            what = (f"the data folder {config.data.root} changed since this run's checkpoints "
                    f"were written (step {resumed_step}, files in {path}): " + "; ".join(changes))
            if not bool(config.train.get("allow_config_change", False)):
                raise SplitsChanged(
                    f"{what}. Resume refused and nothing in the workdir was changed: restore "
                    "the folder, use another --workdir, or set "
                    "config.train.allow_config_change=True to continue on the new files")
            log(f"warning: {what}; continuing on the new files "
                "(config.train.allow_config_change)")
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.write_text(path, json.dumps(current, indent=1) + "\n")
    return current
