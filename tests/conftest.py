"""Shared fixtures: where the real drawings are, and a small pipeline runner."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from sample_paths import BUNDLED_SAMPLE, SHARED_SAMPLE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_sample() -> Path:
    """The 8,600 real drawings (344 classes x 25) that sit beside the repo."""
    if not SHARED_SAMPLE.is_dir():
        pytest.skip("real sample not found at %s" % SHARED_SAMPLE)
    return SHARED_SAMPLE


@pytest.fixture(scope="session")
def real_lines(shared_sample) -> list[str]:
    lines = []
    for path in sorted(glob.glob(str(shared_sample / "*.ndjson"))):
        with open(path, encoding="utf-8") as f:
            lines += f.read().splitlines()
    return lines


@pytest.fixture(scope="session")
def bundled_sample() -> Path:
    return BUNDLED_SAMPLE
