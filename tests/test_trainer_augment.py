"""Stroke augmentation: valid, finite ink; the same for a seed; training only."""
import numpy as np
import pytest
import tensorflow as tf

import tfrecord_schema as schema
from pipeline.parse import parse_line
from trainer import data
from trainer.augment import AugmentConfig, augment_ink
from trainer.preprocess import ink_to_points
from trainer_helpers import BUNDLED_SAMPLE, read_drawings, write_tutorial_dataset

CLASSES = ["cat", "bicycle", "star", "key"]
STRONG = AugmentConfig(scale=0.5, shear=0.5, rotation=45.0, jitter=0.05, drop_points=0.5,
                       drop_strokes=0.5)
NONE = AugmentConfig(scale=0.0, shear=0.0, rotation=0.0, jitter=0.0, drop_points=0.0,
                     drop_strokes=0.0)


@pytest.fixture(scope="module")
def inks() -> list[np.ndarray]:
    sample = sorted(p.stem for p in BUNDLED_SAMPLE.glob("*.ndjson"))
    return [parse_line(line)[0] for lines in read_drawings(BUNDLED_SAMPLE, sample).values()
            for line in lines]


@pytest.fixture(scope="module")
def augmented(inks):
    """Every bundled drawing augmented strongly, each with its own seed, in one tf.data pass."""
    def change(index, ink):
        return augment_ink(ink, tf.shape(ink)[0], tf.stack([tf.constant(7, tf.int64), index]),
                           STRONG)

    ds = tf.data.Dataset.from_generator(lambda: iter(inks), output_signature=tf.TensorSpec(
        [None, 3], tf.float32)).enumerate().map(change)
    return [(ink.numpy(), int(length)) for ink, length in ds]


def test_ink_to_points_inverts_the_normalisation(inks):
    for ink in inks[:50]:
        points, ends, count = ink_to_points(ink[np.newaxis], np.array([len(ink)]))
        points = points.numpy()[0]
        assert count.numpy()[0] == len(ink) + 1
        np.testing.assert_allclose(np.diff(points, axis=0), ink[:, :2], atol=1e-6)
        extent = points.max(axis=0) - points.min(axis=0)
        assert points.min() == pytest.approx(0.0, abs=1e-6)
        assert np.all((np.abs(extent - 1) < 1e-5) | (extent < 1e-6))
        np.testing.assert_array_equal(ends.numpy()[0, 1:], ink[:, 2])


def test_augmented_ink_is_valid_normalised_ink(inks, augmented):
    assert len(augmented) == len(inks) == 500
    for original, (ink, length) in zip(inks, augmented):
        assert ink.shape == (length, 3) and 1 <= length <= len(original)
        assert np.isfinite(ink).all()
        assert set(np.unique(ink[:, 2])) <= {0.0, 1.0}
        assert ink[-1, 2] == 1.0, "the last point ends its stroke"
        points = np.concatenate([[[0.0, 0.0]], np.cumsum(ink[:, :2], axis=0)])
        extent = points.max(axis=0) - points.min(axis=0)
        assert np.all((np.abs(extent - 1) < 1e-4) | (extent < 1e-6)), extent


def test_augmentation_changes_the_drawings(inks, augmented):
    changed = sum(len(i) != n or not np.allclose(i, a[:n]) for i, (a, n) in zip(inks, augmented))
    assert changed == len(inks)
    dropped = sum(n < len(i) for i, (_, n) in zip(inks, augmented))
    strokes_dropped = sum(a[:, 2].sum() < i[:, 2].sum() for i, (a, _) in zip(inks, augmented))
    assert dropped > 0.8 * len(inks) and strokes_dropped > 0.3 * len(inks)


def test_no_change_gives_the_drawing_back(inks):
    for ink in inks[:20]:
        out, length = augment_ink(tf.constant(ink), len(ink), tf.constant([1, 2], tf.int64), NONE)
        assert int(length) == len(ink)
        np.testing.assert_allclose(out.numpy(), ink, atol=1e-5)


def test_same_seed_same_drawing_other_seed_other_drawing(inks):
    ink = tf.constant(inks[0])
    first = augment_ink(ink, len(inks[0]), tf.constant([3, 9], tf.int64), STRONG)[0].numpy()
    again = augment_ink(ink, len(inks[0]), tf.constant([3, 9], tf.int64), STRONG)[0].numpy()
    other = augment_ink(ink, len(inks[0]), tf.constant([4, 9], tf.int64), STRONG)[0].numpy()
    np.testing.assert_array_equal(first, again)
    assert first.shape != other.shape or not np.allclose(first, other)


def test_training_batches_are_augmented_eval_batches_are_not(tmp_path):
    paths = write_tutorial_dataset(tmp_path, CLASSES, train_per_class=5, eval_per_class=5,
                                   shards=1)

    def first_inks(pattern, training, augment):
        ds = data.make_dataset(pattern, 20, CLASSES, training=training, seed=0, augment=augment)
        features, _ = next(iter(ds))
        return sorted(features[schema.INK].numpy()[i, :n].tobytes()
                      for i, n in enumerate(features[data.LENGTHS].numpy()))

    plain = first_inks(paths["eval_data"], False, None)
    assert first_inks(paths["eval_data"], False, STRONG) == plain
    assert set(first_inks(paths["training_data"], True, STRONG)).isdisjoint(
        set(first_inks(paths["training_data"], True, None)))
