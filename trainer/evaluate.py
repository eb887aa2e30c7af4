"""Evaluation on a fixed eval set: metrics, the JSON report, the confusion matrix.

``evaluate_saved_model`` scores an exported model the same way the trainer
scores its checkpoints, so two exports can be compared on the same data.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf

import tfrecord_schema as schema
from atomic_outputs import write_atomically
from trainer import data
from trainer.calibration import CalibrationStats
from trainer.charts import confusion_chart, png_bytes, reliability_diagram
from trainer.errors import TrainerError
from trainer.metrics import classification_metrics, confusion_matrix

REPORT_FILE = "eval_report.json"
CONFUSION_FILE = "confusion_matrix.png"
RELIABILITY_FILE = "reliability_diagram.png"


def run_eval(logits_fn: Callable[[dict], tf.Tensor], dataset: tf.data.Dataset,
             classes: list[str], max_batches: int | None = None,
             temperature: float | None = None) -> tuple[dict, np.ndarray]:
    """Metrics and confusion matrix of ``logits_fn`` over (a prefix of) ``dataset``.

    ``logits_fn`` gives raw logits. With no ``temperature`` one is fitted on
    these examples (``trainer.calibration``); with one, the calibration
    figures are those of the probabilities ``softmax(logits / temperature)``.
    """
    labels, ranked, losses = [], [], []
    stats = CalibrationStats() if temperature is None else CalibrationStats.at(temperature)
    k = min(3, len(classes))
    try:
        for n, (features, batch_labels) in enumerate(dataset):
            if max_batches is not None and n >= max_batches:
                break
            logits = tf.cast(logits_fn(features), tf.float32)
            losses.append(tf.nn.sparse_softmax_cross_entropy_with_logits(
                batch_labels, logits).numpy())
            ranked.append(tf.math.top_k(logits, k=k).indices.numpy())
            labels.append(batch_labels.numpy())
            stats.update(logits.numpy(), labels[-1])
    except data.DATA_ERRORS as e:
        raise TrainerError("bad eval data: %s" % data.data_error(e.message)) from e
    if not labels:
        raise TrainerError("empty dataset: the eval data has no examples")
    labels_np, ranked_np = np.concatenate(labels), np.concatenate(ranked)
    metrics = classification_metrics(labels_np, ranked_np, np.concatenate(losses), classes)
    metrics.update(stats.result(fit=temperature is None))
    return metrics, confusion_matrix(labels_np, ranked_np[:, 0], len(classes))


def write_report(report: dict, matrix: np.ndarray, classes: list[str], model_dir: str) -> None:
    """``eval_report.json``, ``confusion_matrix.png`` and (when the report has
    calibration figures) ``reliability_diagram.png`` in ``model_dir``."""
    tf.io.gfile.makedirs(model_dir)
    write_json(os.path.join(model_dir, REPORT_FILE), report)
    write_atomically(os.path.join(model_dir, CONFUSION_FILE),
                     png_bytes(confusion_chart(matrix, classes)))
    if "reliability" in report:
        write_atomically(os.path.join(model_dir, RELIABILITY_FILE), png_bytes(
            reliability_diagram(report["reliability"], report["temperature"])))


def write_json(path: str, value: dict) -> None:
    """Strict JSON (a NaN or infinity is an error, not a ``NaN`` token), written
    whole (``atomic_outputs``), so readers never see half a file."""
    text = json.dumps(value, indent=1, sort_keys=True, allow_nan=False)
    write_atomically(path, text.encode("utf-8"))


def evaluate_saved_model(export_dir: str, eval_data: str, classes_file: str,
                         batch_size: int = 64) -> dict:
    """The eval report's metrics for an exported model on ``eval_data``."""
    from trainer.export import INK_SIGNATURE, export_temperature, load_export

    loaded, export_classes = load_export(export_dir)
    classes = data.read_classes(classes_file)
    if classes != export_classes:
        raise TrainerError("the export at %s was trained on other classes than %s"
                           % (export_dir, classes_file))
    files = data.list_files(eval_data)
    data.check_records(files, classes)
    signature = loaded.signatures[INK_SIGNATURE]
    dataset = data.make_dataset(files, batch_size, classes, training=False,
                                boundaries=data.length_boundaries(eval_data))

    def logits_fn(features):
        return signature(ink=features[schema.INK],
                         lengths=tf.cast(features[data.LENGTHS], tf.int32))["logits"]

    metrics, _ = run_eval(logits_fn, dataset, classes, temperature=export_temperature(loaded))
    metrics["global_step"] = int(loaded.global_step.numpy())
    return metrics
