"""The SavedModel: raw strokes in, top-k class names and probabilities out.

Two signatures share the weights:
- ``serving_default`` takes raw drawings (absolute ``x``, ``y`` and the
  ``stroke_end`` flag per point, padded, and the number of points) and applies
  the tutorial's normalisation in the graph (``trainer.preprocess``);
- ``predict_ink`` takes ink as stored in the TFRecords, for evaluating an
  export on a fixed eval set.
Both return ``classes``/``scores`` (top k), ``probabilities`` over all
classes and ``logits``.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

import tfrecord_schema as schema
from trainer.data import LENGTHS
from trainer.errors import TrainerError
from trainer.model import ModelConfig, SketchClassifier, build_model
from trainer.preprocess import normalize_strokes

RAW_SIGNATURE = "serving_default"
INK_SIGNATURE = "predict_ink"
CONFIG_ASSET = "model_config.json"


class SketchServer(tf.Module):
    """What the SavedModel holds: the classifier, the class names, the signatures."""

    def __init__(self, model: SketchClassifier, classes: list[str], global_step: int,
                 top_k: int = 3):
        super().__init__()
        self.model = model
        self.model_weights = list(model.weights)
        self.class_names = tf.Variable(classes, trainable=False, dtype=tf.string)
        self.global_step = tf.Variable(global_step, trainable=False, dtype=tf.int64)
        self.top_k = min(top_k, len(classes))

    def _outputs(self, ink: tf.Tensor, lengths: tf.Tensor) -> dict:
        missing = tf.maximum(1 - tf.shape(ink)[1], 0)  # a batch of one-point drawings
        ink = tf.pad(ink, [[0, 0], [0, missing], [0, 0]])
        logits = self.model({schema.INK: ink, LENGTHS: lengths}, training=False)
        probabilities = tf.nn.softmax(logits)
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
        ink, ink_lengths = normalize_strokes(x, y, stroke_end, lengths)
        return self._outputs(ink, ink_lengths)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, schema.INK_CHANNELS], tf.float32, name=schema.INK),
        tf.TensorSpec([None], tf.int32, name="lengths"),
    ])
    def serve_ink(self, ink, lengths):
        return self._outputs(ink, lengths)


def export_model(model: SketchClassifier, classes: list[str], export_dir: str,
                 global_step: int, top_k: int = 3) -> str:
    """Writes the SavedModel (and its model config as an asset) to ``export_dir``."""
    serving_model = build_model(ModelConfig.from_dict(
        dict(model.config.to_dict(), mixed_precision=False)))
    serving_model.set_weights(model.get_weights())
    server = SketchServer(serving_model, classes, global_step, top_k)
    if tf.io.gfile.exists(export_dir):  # a rerun's export replaces the last one
        tf.io.gfile.rmtree(export_dir)
    tf.saved_model.save(server, export_dir, signatures={RAW_SIGNATURE: server.serve_raw,
                                                        INK_SIGNATURE: server.serve_ink})
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets", CONFIG_ASSET), "w") as f:
        json.dump(serving_model.config.to_dict(), f, indent=1)
    return export_dir


def load_export(export_dir: str):
    """The loaded SavedModel and its class names."""
    if not tf.saved_model.contains_saved_model(export_dir):
        raise TrainerError("no SavedModel in %s" % export_dir)
    loaded = tf.saved_model.load(export_dir)
    classes = [c.decode("utf-8") for c in loaded.class_names.numpy()]
    return loaded, classes


def export_config(export_dir: str) -> ModelConfig:
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets", CONFIG_ASSET)) as f:
        return ModelConfig.from_dict(json.load(f))
