"""Test set-up: paths to the shared real datasets, and a clean JAX config.

Tests that need several CPU devices run in a subprocess with XLA_FLAGS set
(see tests/train/test_sharding.py); the main test process keeps one device.
"""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def isbi_root() -> Path:
    root = SHARED_DATA / "isbi2012_em"
    if not root.is_dir():
        pytest.skip(f"ISBI 2012 data not found at {root}")
    return root


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    root = SHARED_DATA / "camvid"
    if not root.is_dir():
        pytest.skip(f"CamVid data not found at {root}")
    return root
