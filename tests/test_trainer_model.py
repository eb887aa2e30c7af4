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


def trained_batch_norm_model(**overrides):
    """A model whose batch norms hold non-trivial beta, gamma and moving statistics."""
    settings = dict(num_classes=4, num_layers=1, num_nodes=8, num_conv=(6, 6), conv_len=(5, 3),
                    batch_norm=True, dropout=0.0)
    settings.update(overrides)
    model = build_model(ModelConfig(**settings))
    rng = np.random.default_rng(7)
    for norm in model.norms:
        channels = norm.gamma.shape[0]
        norm.gamma.assign(rng.uniform(0.5, 2.0, channels))
        norm.beta.assign(rng.normal(size=channels))
        norm.moving_mean.assign(rng.normal(size=channels))
        norm.moving_variance.assign(rng.uniform(0.2, 3.0, channels))
    return model


def padded(inks, length=None):
    lengths = np.array([len(i) for i in inks], np.int32)
    out = np.zeros((len(inks), length or lengths.max(), 3), np.float32)
    for row, ink in zip(out, inks):
        row[:len(ink)] = ink
    return {schema.INK: out, LENGTHS: lengths}


def random_inks(seed=3, lengths=(20, 9, 4, 13)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 3)).astype(np.float32) for n in lengths]


def test_batch_norm_inference_logits_same_alone_and_in_any_batch():
    model = trained_batch_norm_model()
    inks = random_inks()
    batched = model(padded(inks, 27), training=False).numpy()
    for i, ink in enumerate(inks):
        alone = model(padded([ink]), training=False).numpy()
        np.testing.assert_allclose(alone[0], batched[i], atol=1e-5)


def test_batch_norm_training_statistics_cover_real_steps_only():
    """In training, batch norm normalises with the batch's own statistics, so a
    drawing's logits depend on the other drawings' real steps, by design; they
    do not depend on the padding (how long the batch is padded), on the order
    of the batch, or on repeating the batch's drawings."""
    model = trained_batch_norm_model()
    inks = random_inks()
    tight = model(padded(inks), training=True).numpy()
    loose = model(padded(inks, 31), training=True).numpy()
    np.testing.assert_allclose(loose, tight, atol=1e-5)
    order = [2, 0, 3, 1]
    shuffled = model(padded([inks[i] for i in order], 25), training=True).numpy()
    np.testing.assert_allclose(shuffled, tight[order], atol=1e-5)
    alone = model(padded(inks[1:2]), training=True).numpy()
    twice = model(padded([inks[1], inks[1]], 30), training=True).numpy()
    np.testing.assert_allclose(twice, np.concatenate([alone, alone]), atol=1e-5)


def test_batch_norm_moving_statistics_from_real_steps():
    model = trained_batch_norm_model()
    norm = model.norms[0]
    before_mean, before_var = norm.moving_mean.numpy(), norm.moving_variance.numpy()
    inks = random_inks()
    model(padded(inks, 40), training=True)
    steps = np.concatenate(inks)
    m = norm.momentum
    np.testing.assert_allclose(norm.moving_mean.numpy(),
                               m * before_mean + (1 - m) * steps.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(),
                               m * before_var + (1 - m) * steps.var(axis=0), atol=1e-5)


def test_dropout_between_lstm_layers_in_training_only():
    # One conv layer: the tutorial puts no dropout before it, so any
    # randomness here comes from the dropout between the LSTM layers.
    model = build_model(ModelConfig(num_classes=4, num_layers=2, num_nodes=8, num_conv=(6,),
                                    conv_len=(3,), dropout=0.5))
    batch = padded(random_inks())
    first, second = (model(batch, training=True).numpy() for _ in range(2))
    assert np.abs(first - second).max() > 1e-3
    np.testing.assert_array_equal(model(batch).numpy(), model(batch).numpy())
    no_dropout = build_model(ModelConfig(num_classes=4, num_layers=2, num_nodes=8,
                                         num_conv=(6,), conv_len=(3,), dropout=0.0))
    np.testing.assert_array_equal(no_dropout(batch, training=True).numpy(),
                                  no_dropout(batch, training=True).numpy())


def test_block_lstm_is_accepted_and_runs_as_lstm():
    from trainer import task
    from trainer.train import model_config
    args = task.build_parser().parse_args(
        ["--training_data=t", "--eval_data=e", "--classes_file=c", "--model_dir=m",
         "--cell_type=block_lstm", "--num_layers=1", "--num_nodes=4"])
    config = model_config(args, 3)
    assert config.cell_type == "block_lstm"
    model = build_model(config)
    assert model(padded(random_inks())).shape == (4, 3)
