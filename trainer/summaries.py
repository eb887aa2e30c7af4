"""TensorBoard scalars written with TensorFlow alone.

``tf.summary.scalar`` lives in the tensorboard package, which TensorFlow no
longer installs; ``tf.summary.write`` with the scalars plugin's metadata
produces the same event records, readable by any TensorBoard.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def scalar(name: str, value: float, step: int) -> None:
    """One scalar into the default summary writer (a no-op without one)."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                     metadata=_SCALAR_METADATA.SerializeToString())
