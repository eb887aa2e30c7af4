"""The export's raw signature: tf.Transform's graph when the dataset has one,
and the same answers as ``parse_line`` + the model on real drawings."""
from __future__ import annotations

import numpy as np
import pytest

from serving_helpers import (dataset_classes, expected_probabilities, raw_batch, tiny_export,
                             transform_dir)


@pytest.mark.slow
def test_served_result_is_parse_line_and_the_model(serving_dataset, serving_export, real_lines):
    import tensorflow as tf
    export, model = serving_export
    classes = dataset_classes(serving_dataset)
    loaded = tf.saved_model.load(str(export))
    assert loaded.preprocessing.numpy() == b"tf.Transform"
    assert (export / "assets" / "class_vocabulary").is_file()
    lines = real_lines[::80]  # drawings of every kind, 2 to hundreds of points
    served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in
                                                     raw_batch(lines).items()})
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               expected_probabilities(model, lines), atol=2e-5)
    top = np.argsort(-served["probabilities"].numpy(), axis=1)[:, :3]
    assert [[c.decode() for c in row] for row in served["classes"].numpy()] == \
        [[classes[i] for i in row] for row in top]


@pytest.mark.slow
def test_transform_output_of_another_dataset_is_refused(tmp_path, serving_dataset):
    from trainer.errors import TrainerError
    with pytest.raises(TrainerError, match="made from another dataset"):
        tiny_export(tmp_path / "export", ["cat", "dog", "fish"], transform_dir(serving_dataset))


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
