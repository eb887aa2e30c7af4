"""Shared fixtures: where the real drawings are, and a small pipeline runner."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from sample_paths import BUNDLED_SAMPLE, REAL_SAMPLE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """The 8,600 real drawings (344 classes x 25) in data/real_sample."""
    return REAL_SAMPLE


shared_sample = real_sample


@pytest.fixture(scope="session")
def real_lines(real_sample) -> list[str]:
    lines = []
    for path in sorted(glob.glob(str(real_sample / "*.ndjson"))):
        with open(path, encoding="utf-8") as f:
            lines += f.read().splitlines()
    return lines


@pytest.fixture(scope="session")
def bundled_sample() -> Path:
    return BUNDLED_SAMPLE


@pytest.fixture(scope="session")
def serving_dataset(real_sample, tmp_path_factory) -> Path:
    """A pipeline dataset (tf.Transform output, eval and test splits) of 4 real classes."""
    from serving_helpers import pipeline_dataset
    return pipeline_dataset(real_sample, tmp_path_factory.mktemp("serving") / "dataset")


@pytest.fixture(scope="session")
def serving_export(serving_dataset, tmp_path_factory):
    """A tiny export over ``serving_dataset`` that preprocesses with its tf.Transform graph;
    (export dir, the Keras model it holds)."""
    from serving_helpers import dataset_classes, tiny_export, transform_dir
    return tiny_export(tmp_path_factory.mktemp("serving") / "export",
                       dataset_classes(serving_dataset), transform_dir(serving_dataset))


@pytest.fixture(scope="session")
def server(serving_dataset, serving_export):
    """``quickdraw-serve`` on ``serving_export`` with the dataset's held-out drawings."""
    from serving_helpers import ServerProcess
    process = ServerProcess("--model=%s" % serving_export[0], "--examples=%s" % serving_dataset,
                            "--threshold=0.3", "--top_k=3")
    yield process
    process.stop()
