"""The classifier: the unmasked reverse_sequence BiLSTM equals Keras' masked one,
and a drawing's logits do not depend on how much padding its batch has."""
import keras
import numpy as np
import tensorflow as tf

import tfrecord_schema as schema
from trainer.data import LENGTHS
from trainer.model import BidirectionalLSTM, ModelConfig, build_model


def test_bidirectional_layer_equals_masked_keras_bidirectional():
    rng = np.random.default_rng(0)
    lengths = np.array([7, 3, 1, 5], np.int32)
    x = rng.normal(size=(4, 7, 6)).astype(np.float32)
    x[np.arange(7)[None, :] >= lengths[:, None]] = 99.0  # padding must not leak in
    ours = BidirectionalLSTM(5)
    ours.build((None, None, 6))
    reference = keras.layers.Bidirectional(
        keras.layers.LSTM(5, return_sequences=True), merge_mode="concat")
    mask = tf.sequence_mask(lengths, 7)
    reference(x, mask=mask)
    reference.forward_layer.set_weights(ours.forward.get_weights())
    reference.backward_layer.set_weights(ours.backward.get_weights())
    got = ours(x, lengths).numpy()
    want = reference(x, mask=mask).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], want[i, :n], atol=1e-5)


def test_logits_independent_of_padding_and_batch():
    model = build_model(ModelConfig(num_classes=4, num_layers=2, num_nodes=8,
                                    num_conv=(6, 6), conv_len=(5, 3)))
    rng = np.random.default_rng(1)
    ink = rng.normal(size=(3, 20, 3)).astype(np.float32)
    lengths = np.array([20, 9, 4], np.int32)
    ink[np.arange(20)[None, :] >= lengths[:, None]] = 0.0
    batched = model({schema.INK: ink, LENGTHS: lengths}).numpy()
    for i, n in enumerate(lengths):
        alone = model({schema.INK: ink[i:i + 1, :n], LENGTHS: lengths[i:i + 1]}).numpy()
        np.testing.assert_allclose(alone[0], batched[i], atol=1e-5)


def test_default_model_has_tutorial_shape():
    model = build_model(ModelConfig(num_classes=345))
    names = [w.path for w in model.weights]
    assert sum("conv1d" in n and n.endswith("kernel") for n in names) == 3
    assert sum("bidirectional_lstm" in n for n in names) == 3 * 2 * 3  # layers x dirs x vars
    out = model({schema.INK: np.zeros((2, 5, 3), np.float32), LENGTHS: np.array([5, 2])})
    assert out.shape == (2, 345) and out.dtype == tf.float32


def test_checkpoint_holds_every_weight(tmp_path):
    config = ModelConfig(num_classes=3, num_layers=2, num_nodes=4, num_conv=(4, 4),
                         conv_len=(3, 3), batch_norm=True)
    model = build_model(config)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
    assert len(saved) == len(model.weights)  # batch norm's moving statistics included
    for w in model.weights:
        w.assign(tf.zeros_like(w))
    tf.train.Checkpoint(model=build_model(config)).read(path).assert_existing_objects_matched()
