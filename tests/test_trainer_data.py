"""Batches sized by a budget of points: every batch fits it, no drawing is lost."""
import numpy as np
import pytest

from trainer import data, task
from trainer.errors import TrainerError
from trainer_helpers import TINY_MODEL, data_flags, write_tutorial_dataset

CLASSES = ["cat", "moon", "ladder", "umbrella"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_tutorial_dataset(tmp_path_factory.mktemp("tokens"), CLASSES,
                                  train_per_class=10, eval_per_class=5)


def test_bucket_batch_sizes_by_points():
    assert data.bucket_batch_sizes([10, 20, 40], 64) == [64] * 4
    # Longest drawing per bucket: 9, 19, 39, and 51 for the open-ended last one.
    assert data.bucket_batch_sizes([10, 20, 40], 64, 400) == [44, 21, 10, 7]
    assert data.bucket_batch_sizes([10, 20, 40], 16, 400) == [16, 16, 10, 7]
    assert data.bucket_batch_sizes([10, 20, 40], 64, 30) == [3, 1, 1, 1]


def test_batches_fit_the_budget_and_keep_every_drawing(paths):
    boundaries = [12, 20, 32, 48, 64, 96]
    budget = 300
    batches = list(data.make_dataset(paths["training_data"], 32, CLASSES, training=False,
                                     boundaries=data.extend_tail(boundaries, 200),
                                     batch_tokens=budget))
    sizes = [(int(f["ink"].shape[0]), int(f["ink"].shape[1])) for f, _ in batches]
    assert sum(b for b, _ in sizes) == 10 * len(CLASSES)
    assert all(b <= 32 for b, _ in sizes)
    assert all(b * t <= budget or b == 1 for b, t in sizes), sizes
    assert len({b for b, _ in sizes}) > 1, "short and long drawings should get other sizes"


def test_budget_needs_bucketing(paths, tmp_path):
    argv = data_flags(paths) + TINY_MODEL + ["--model_dir=%s" % tmp_path, "--batch_tokens=500",
                                             "--no_bucketing"]
    with pytest.raises(TrainerError, match=r"--batch_tokens\b.*--no_bucketing"):
        task.main(argv)


@pytest.mark.slow
def test_trains_with_a_budget_of_points(paths, tmp_path):
    metrics = task.main(data_flags(paths) + TINY_MODEL + [
        "--model_dir=%s" % tmp_path, "--steps=6", "--batch_size=16", "--batch_tokens=400",
        "--eval_every_steps=0", "--seed=0"])
    assert metrics["global_step"] == 6 and np.isfinite(metrics["loss"])
    assert metrics["num_examples"] == 5 * len(CLASSES)
