"""The export's raw signature: tf.Transform's graph when the dataset has one,
and the same answers as ``parse_line`` + the model on real drawings."""
from __future__ import annotations

import json

import numpy as np
import pytest

import tfrecord_schema as schema
from pipeline.parse import parse_line
from serving_helpers import dataset_classes, pipeline_dataset, tiny_export, transform_dir


def raw_batch(lines: list[str]) -> dict:
    """Padded absolute points of ndjson lines, as the raw signature takes them."""
    drawings = []
    for line in lines:
        xs, ys, ends = [], [], []
        for stroke in json.loads(line)["drawing"]:
            xs += stroke[0]
            ys += stroke[1]
            ends += [0.0] * (len(stroke[0]) - 1) + [1.0]
        drawings.append((xs, ys, ends))
    n = max(len(d[0]) for d in drawings)
    batch = np.zeros((3, len(drawings), n), np.float32)
    for i, d in enumerate(drawings):
        for c in range(3):
            batch[c, i, :len(d[c])] = d[c]
    return dict(x=batch[0], y=batch[1], stroke_end=batch[2],
                lengths=np.array([len(d[0]) for d in drawings], np.int32))


def expected_probabilities(model, lines: list[str]) -> np.ndarray:
    """parse_line + the Keras model, one drawing at a time (no padding)."""
    import tensorflow as tf
    out = []
    for line in lines:
        ink, _ = parse_line(line)
        logits = model({schema.INK: ink[np.newaxis], "lengths": np.array([len(ink)], np.int32)},
                       training=False)
        out.append(tf.nn.softmax(logits)[0].numpy())
    return np.stack(out)


@pytest.mark.slow
def test_served_result_is_parse_line_and_the_model(tmp_path, shared_sample, real_lines):
    import tensorflow as tf
    dataset = pipeline_dataset(shared_sample, tmp_path / "dataset")
    classes = dataset_classes(dataset)
    export, model = tiny_export(tmp_path / "export", classes, transform_dir(dataset))
    loaded = tf.saved_model.load(str(export))
    assert loaded.preprocessing.numpy() == b"tf.Transform"
    assert (export / "assets" / "class_vocabulary").is_file()
    lines = real_lines[::40]  # drawings of every kind, 1 to hundreds of points
    served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in
                                                     raw_batch(lines).items()})
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               expected_probabilities(model, lines), atol=2e-5)
    top = np.argsort(-served["probabilities"].numpy(), axis=1)[:, :3]
    assert [[c.decode() for c in row] for row in served["classes"].numpy()] == \
        [[classes[i] for i in row] for row in top]


@pytest.mark.slow
def test_transform_output_of_another_dataset_is_refused(tmp_path, shared_sample):
    from trainer.errors import TrainerError
    dataset = pipeline_dataset(shared_sample, tmp_path / "dataset", ["cat", "dog"])
    with pytest.raises(TrainerError, match="made from another dataset"):
        tiny_export(tmp_path / "export", ["cat", "dog", "fish"], transform_dir(dataset))


@pytest.mark.slow
def test_tutorial_dataset_export_uses_the_trainer_preprocessing(tmp_path, real_lines):
    import tensorflow as tf
    export, model = tiny_export(tmp_path / "export")
    loaded = tf.saved_model.load(str(export))
    assert loaded.preprocessing.numpy() == b"trainer.preprocess"
    lines = real_lines[::300]
    served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in
                                                     raw_batch(lines).items()})
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               expected_probabilities(model, lines), atol=2e-5)
