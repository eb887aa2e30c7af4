"""The tutorial's classifier as a Keras model: conv1d stack, BiLSTMs, dense.

Batches are right-padded. Instead of masking every LSTM step, the forward
LSTM simply runs over the padding (a forward LSTM's outputs at valid steps
never depend on later steps) and the backward LSTM runs forward over each
drawing reversed within its own length (``tf.reverse_sequence``), which keeps
padding at the end again. Beyond that, the lengths zero the padding after
each batch norm and each conv layer, restrict batch norm's statistics to the
real steps, and select the steps the final sum adds up. This is what the
tutorial's ``stack_bidirectional_dynamic_rnn`` computed, it needs no per-step
masking, and with no mask Keras runs its LSTMs on the cuDNN kernel on a GPU.

Dropout follows the tutorial (training only): before every conv layer but
the first, and between the bidirectional LSTM layers, as its ``CudnnLSTM``
path applies it. (Its ``lstm`` path, in ``train_model.py`` of tensorflow/models
at commit 16b3d8d, wraps every cell in a ``DropoutWrapper`` with
``output_keep_prob=1 - dropout``, which also drops after the last layer and
at evaluation: not followed.)
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

import tfrecord_schema as schema
from trainer import raster
from trainer.data import LENGTHS
from trainer.names import CELL_TYPES, MODEL_FAMILIES


@dataclasses.dataclass
class ModelConfig:
    """Hyperparameters of the architecture (saved beside checkpoints and exports)."""
    num_classes: int
    num_layers: int = 3
    num_nodes: int = 128
    num_conv: tuple[int, ...] = (48, 64, 96)
    conv_len: tuple[int, ...] = (5, 5, 3)
    cell_type: str = "lstm"
    batch_norm: bool = False
    dropout: float = 0.3
    mixed_precision: bool = False
    model: str = "rnn"
    raster_size: int = 24
    cnn_filters: tuple[int, ...] = (16, 32, 64)
    cnn_dense: int = 256

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        for key in ("num_conv", "conv_len", "cnn_filters"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


class BidirectionalLSTM(keras.layers.Layer):
    """One bidirectional LSTM layer over right-padded sequences; outputs concatenated."""

    def __init__(self, units: int, cell_type: str = "lstm", **kwargs):
        super().__init__(**kwargs)
        use_cudnn = True if cell_type == "cudnn_lstm" else "auto"
        self.forward = keras.layers.LSTM(units, return_sequences=True, use_cudnn=use_cudnn,
                                         dtype=self.dtype_policy, name="forward")
        self.backward = keras.layers.LSTM(units, return_sequences=True, use_cudnn=use_cudnn,
                                          dtype=self.dtype_policy, name="backward")

    def build(self, input_shape):
        self.forward.build(input_shape)
        self.backward.build(input_shape)

    def call(self, inputs, lengths):
        lengths = tf.cast(lengths, tf.int32)
        forward = self.forward(inputs)
        reversed_inputs = tf.reverse_sequence(inputs, lengths, seq_axis=1, batch_axis=0)
        backward = tf.reverse_sequence(self.backward(reversed_inputs), lengths,
                                       seq_axis=1, batch_axis=0)
        return tf.concat([forward, backward], axis=-1)


class SketchClassifier(keras.Model):
    """``{"ink": [B, T, 3], "lengths": [B]}`` -> class logits ``[B, num_classes]`` (float32)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        if len(config.num_conv) != len(config.conv_len):
            raise ValueError("num_conv and conv_len must have the same length")
        self.config = config
        policy = "mixed_float16" if config.mixed_precision else "float32"
        self.norms = [keras.layers.BatchNormalization(dtype=policy, name="batch_norm_%d" % i)
                      for i in range(len(config.num_conv))] if config.batch_norm else []
        self.dropouts = [keras.layers.Dropout(config.dropout, name="dropout_%d" % i)
                         for i in range(len(config.num_conv))]
        self.rnn_dropouts = [keras.layers.Dropout(config.dropout, name="rnn_dropout_%d" % i)
                             for i in range(config.num_layers - 1)]
        self.convs = [keras.layers.Conv1D(filters, width, padding="same", activation=None,
                                          dtype=policy, name="conv1d_%d" % i)
                      for i, (filters, width) in enumerate(zip(config.num_conv, config.conv_len))]
        self.rnns = [BidirectionalLSTM(config.num_nodes, config.cell_type, dtype=policy,
                                       name="bidirectional_lstm_%d" % i)
                     for i in range(config.num_layers)]
        self.logits = keras.layers.Dense(config.num_classes, dtype="float32", name="logits")
        # tf.train.Checkpoint does not see layers that Keras 3 holds in lists;
        # as attributes they (and batch norm's moving statistics) are saved.
        for layers in (self.norms, self.convs, self.rnns):
            for layer in layers:
                setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        ink_shape = (None, None, schema.INK_CHANNELS)
        for i, conv in enumerate(self.convs):
            if self.norms:
                self.norms[i].build(ink_shape)
            conv.build(ink_shape)
            ink_shape = (None, None, conv.filters)
        for rnn in self.rnns:
            rnn.build(ink_shape)
            ink_shape = (None, None, 2 * self.config.num_nodes)
        self.logits.build((None, ink_shape[-1]))
        self.built = True

    def call(self, inputs, training=False):
        x = tf.cast(inputs[schema.INK], self.compute_dtype)
        lengths = tf.cast(inputs[LENGTHS], tf.int32)
        mask = tf.sequence_mask(lengths, tf.shape(x)[1])
        valid = tf.cast(mask, self.compute_dtype)[..., None]
        x = x * valid
        for i, conv in enumerate(self.convs):
            if self.norms:
                # Statistics over the real steps only; batch norm maps the
                # padding's zeros to beta - mean * gamma / sigma, so it is
                # zeroed again before the convolution reads it.
                x = tf.cast(self.norms[i](x, training=training, mask=mask),
                            self.compute_dtype) * valid
            if i > 0 and self.config.dropout:
                x = self.dropouts[i](x, training=training)
            # Zeroing the padding keeps the next convolution's window from
            # seeing it, so a drawing's logits do not depend on its batch.
            x = conv(x) * valid
        for i, rnn in enumerate(self.rnns):
            if i > 0 and self.config.dropout:
                x = self.rnn_dropouts[i - 1](x, training=training)
            x = rnn(x, lengths)
        summed = tf.reduce_sum(tf.cast(x, tf.float32) * tf.cast(valid, tf.float32), axis=1)
        return self.logits(summed)


class RasterClassifier(keras.Model):
    """The same inputs -> logits, through the drawing rendered as an image.

    Takes the image from ``inputs["raster"]`` when the input pipeline has
    rendered it (training and eval batches), else renders the ink itself
    (the export, which is served raw strokes); both render with
    ``trainer.raster.render``. Per stage: a 3x3 convolution with ReLU and
    2x2 max pooling; then dropout, a dense ReLU layer, dropout and the
    logits. Position matters in a sketch (a wheel below, not beside), so the
    last feature map is flattened rather than averaged. There is no batch
    norm: in short runs at a high learning rate its moving statistics lag
    the weights and inference breaks; without it a drawing's logits are also
    the same alone or in any batch.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        policy = "mixed_float16" if config.mixed_precision else "float32"
        # He initialisation: with Glorot's, each ReLU layer halves the signal of
        # the mostly blank images and training sits longer on its first plateau.
        self.convs = [keras.layers.Conv2D(f, 3, padding="same", activation="relu",
                                          kernel_initializer="he_normal", dtype=policy,
                                          name="conv2d_%d" % i)
                      for i, f in enumerate(config.cnn_filters)]
        self.pool = keras.layers.MaxPooling2D(2, dtype=policy, name="pool")
        self.flatten = keras.layers.Flatten(dtype=policy, name="flatten")
        self.dropout = keras.layers.Dropout(config.dropout, name="dropout")
        self.dense = keras.layers.Dense(config.cnn_dense, activation="relu",
                                        kernel_initializer="he_normal", dtype=policy, name="dense")
        self.logits = keras.layers.Dense(config.num_classes, dtype="float32", name="logits")
        for layer in self.convs:
            setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        size = self.config.raster_size
        shape = (None, size, size, raster.CHANNELS)
        for conv in self.convs:
            conv.build(shape)
            shape = (None, shape[1] // 2, shape[2] // 2, conv.filters)
        self.dense.build((None, shape[1] * shape[2] * shape[3]))
        self.logits.build((None, self.config.cnn_dense))
        self.built = True

    def call(self, inputs, training=False):
        image = inputs.get(raster.RASTER)
        if image is None:
            image = raster.render(inputs[schema.INK], inputs[LENGTHS], self.config.raster_size)
        x = tf.cast(image, self.compute_dtype)
        for conv in self.convs:
            x = self.pool(conv(x))
        x = self.dropout(self.flatten(x), training=training)
        x = self.dropout(self.dense(x), training=training)
        return self.logits(x)


def build_model(config: ModelConfig) -> keras.Model:
    """A built model (variables created), ready to restore a checkpoint into."""
    if config.model not in MODEL_FAMILIES:
        raise ValueError("unknown model %r (choose from %s)"
                         % (config.model, ", ".join(MODEL_FAMILIES)))
    family = RasterClassifier if config.model == "cnn" else SketchClassifier
    model = family(config, dtype="mixed_float16" if config.mixed_precision else None)
    model.build()
    return model
