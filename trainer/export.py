"""The SavedModel: raw strokes in, top-k class names and probabilities out.

Two signatures share the weights:
- ``serving_default`` takes raw drawings (absolute ``x``, ``y`` and the
  ``stroke_end`` flag per point, padded, and the number of points) and turns
  them into the tutorial's ink in the graph: with the pipeline's tf.Transform
  graph (``transform_output/`` beside the classes file, as TFX serves a
  ``transform_features_layer``), so that training data and serving share one
  preprocessing; for a dataset made by the tutorial's own script, which has no
  such graph, with ``trainer.preprocess``;
- ``predict_ink`` takes ink as stored in the TFRecords, for evaluating an
  export on a fixed eval set.
Both return ``classes``/``scores`` (top k), ``probabilities`` over all
classes and ``logits``. The probabilities (and so the scores) are
calibrated: ``softmax(logits / temperature)``, with the temperature fitted
on the eval split after training (``trainer.calibration``) and stored in the
export; ``logits`` are the model's own.
"""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

import atomic_storage
import tfrecord_schema as schema
from atomic_outputs import publish_folder
from trainer.data import LENGTHS
from trainer.errors import TrainerError
from trainer.model import ModelConfig, build_model
from trainer.preprocess import normalize_strokes

RAW_SIGNATURE = "serving_default"
INK_SIGNATURE = "predict_ink"
CONFIG_ASSET = "model_config.json"
TRANSFORM_PREPROCESSING = "tf.Transform"
TRAINER_PREPROCESSING = "trainer.preprocess"


def dataset_transform_output(classes_file: str) -> str | None:
    """The pipeline's tf.Transform output beside a dataset's classes file, if any."""
    path = os.path.join(os.path.dirname(classes_file), schema.TRANSFORM_DIR)
    return path if tf.io.gfile.isdir(path) else None


def transform_layer(transform_output: str, classes: list[str]):
    """The pipeline's tf.Transform graph as a layer, checked against the classes."""
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(transform_output)
    words = [line.split(b" ", 1)[-1].decode("utf-8")
             for line in output.vocabulary_by_name(schema.CLASS_VOCABULARY)]
    if sorted(words) != sorted(classes):
        raise TrainerError("%s was made from another dataset: its %d classes differ from the "
                           "%d of the classes file" % (transform_output, len(words), len(classes)))
    return output.transform_features_layer()


class SketchServer(tf.Module):
    """What the SavedModel holds: the classifier, the class names, the signatures."""

    def __init__(self, model: keras.Model, classes: list[str], global_step: int,
                 top_k: int = 3, transform_output: str | None = None,
                 temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.temperature = tf.Variable(temperature, trainable=False, dtype=tf.float32)
        self.model_weights = list(model.weights)
        self.class_names = tf.Variable(classes, trainable=False, dtype=tf.string)
        self.global_step = tf.Variable(global_step, trainable=False, dtype=tf.int64)
        self.top_k = min(top_k, len(classes))
        self.tft_layer = transform_layer(transform_output, classes) if transform_output else None
        self.preprocessing = tf.Variable(
            TRANSFORM_PREPROCESSING if transform_output else TRAINER_PREPROCESSING,
            trainable=False, dtype=tf.string)

    def _ink(self, x, y, stroke_end, lengths) -> tuple[tf.Tensor, tf.Tensor]:
        """Padded raw points -> padded ink and its lengths."""
        if self.tft_layer is None:
            return normalize_strokes(x, y, stroke_end, lengths)
        points = tf.where(tf.sequence_mask(lengths, tf.shape(x)[1]))
        shape = tf.shape(x, out_type=tf.int64)

        def sparse(values):
            return tf.SparseTensor(points, tf.gather_nd(values, points), shape)

        out = self.tft_layer({schema.RAW_X: sparse(x), schema.RAW_Y: sparse(y),
                              schema.RAW_STROKE_END: sparse(stroke_end),
                              schema.WORD: tf.fill(tf.shape(lengths), "")})
        ink = tf.reshape(tf.sparse.to_dense(out[schema.TRANSFORMED_INK]),
                         [tf.shape(x)[0], -1, schema.INK_CHANNELS])
        return ink, tf.maximum(tf.cast(out[schema.TRANSFORMED_LENGTH], tf.int32), 0)

    def _outputs(self, ink: tf.Tensor, lengths: tf.Tensor) -> dict:
        missing = tf.maximum(1 - tf.shape(ink)[1], 0)  # a batch of one-point drawings
        ink = tf.pad(ink, [[0, 0], [0, missing], [0, 0]])
        logits = self.model({schema.INK: ink, LENGTHS: lengths}, training=False)
        probabilities = tf.nn.softmax(logits / self.temperature)
        top = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "classes": tf.gather(self.class_names, top.indices),
            "class_ids": top.indices,
            "scores": top.values,
            "probabilities": probabilities,
            "logits": logits,
        }

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.float32, name=schema.RAW_X),
        tf.TensorSpec([None, None], tf.float32, name=schema.RAW_Y),
        tf.TensorSpec([None, None], tf.float32, name=schema.RAW_STROKE_END),
        tf.TensorSpec([None], tf.int32, name="lengths"),
    ])
    def serve_raw(self, x, y, stroke_end, lengths):
        ink, ink_lengths = self._ink(x, y, stroke_end, lengths)
        return self._outputs(ink, ink_lengths)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, schema.INK_CHANNELS], tf.float32, name=schema.INK),
        tf.TensorSpec([None], tf.int32, name="lengths"),
    ])
    def serve_ink(self, ink, lengths):
        return self._outputs(ink, lengths)


def export_model(model: keras.Model, classes: list[str], export_dir: str,
                 global_step: int, top_k: int = 3, transform_output: str | None = None,
                 temperature: float = 1.0) -> str:
    """Writes the SavedModel (and its model config as an asset) to ``export_dir``.

    With ``transform_output`` (the pipeline's tf.Transform output) the raw
    signature preprocesses with that graph, else with ``trainer.preprocess``.
    The probabilities it serves are ``softmax(logits / temperature)``.
    """
    serving_model = build_model(ModelConfig.from_dict(
        dict(model.config.to_dict(), mixed_precision=False)))
    serving_model.set_weights(model.get_weights())
    server = SketchServer(serving_model, classes, global_step, top_k, transform_output,
                          temperature)
    export_dir = export_dir.rstrip("/")
    staging = atomic_storage.temp_path(export_dir)
    try:
        tf.saved_model.save(server, staging, signatures={RAW_SIGNATURE: server.serve_raw,
                                                         INK_SIGNATURE: server.serve_ink})
        with tf.io.gfile.GFile(os.path.join(staging, "assets", CONFIG_ASSET), "w") as f:
            json.dump(serving_model.config.to_dict(), f, indent=1)
        publish_folder(staging, export_dir)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return export_dir


def load_export(export_dir: str):
    """The loaded SavedModel and its class names."""
    if not tf.saved_model.contains_saved_model(export_dir):
        raise TrainerError("no SavedModel in %s" % export_dir)
    loaded = tf.saved_model.load(export_dir)
    classes = [c.decode("utf-8") for c in loaded.class_names.numpy()]
    return loaded, classes


def export_temperature(loaded) -> float:
    """The temperature a loaded export divides its logits by (1 for older exports)."""
    return float(loaded.temperature.numpy()) if hasattr(loaded, "temperature") else 1.0


def export_config(export_dir: str) -> ModelConfig:
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets", CONFIG_ASSET)) as f:
        return ModelConfig.from_dict(json.load(f))
