"""The tutorial's ``parse_line`` normalisation, in TensorFlow, for padded batches.

The one TensorFlow copy of the normalisation: the tf.Transform graph the
pipeline exports (``pipeline.tft_analysis``), the trainer's export and its
augmentation all run ``normalize_strokes``. The serving signature takes raw
drawings (absolute x, y and an end-of-stroke flag per point) so that clients
need not reproduce the training data's preprocessing; this function does it
inside the graph, bit for bit the way ``pipeline.parse.parse_line`` does it in
NumPy (``pipeline.parse.normalize_many`` is the NumPy copy that writes the
shards, for speed; ``parse_line`` itself is the tutorial's, kept as the tests'
oracle and the baseline benchmark's).
"""
from __future__ import annotations

import tensorflow as tf


def normalize_strokes(x: tf.Tensor, y: tf.Tensor, stroke_end: tf.Tensor,
                      lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Raw points ``[batch, points]`` -> ink ``[batch, points - 1, 3]`` and ink lengths.

    Each drawing's bounding box is scaled to the unit square (a zero extent
    scales by 1), consecutive points become deltas and the first point is
    dropped. Positions past a drawing's length are zero in the output, as
    padding is in the training batches.
    """
    x = tf.cast(x, tf.float32)
    y = tf.cast(y, tf.float32)
    stroke_end = tf.cast(stroke_end, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    points = tf.stack([x, y], axis=-1)                       # [B, N, 2]
    valid = tf.sequence_mask(lengths, tf.shape(x)[1])[..., tf.newaxis]
    big = tf.float32.max
    lower = tf.reduce_min(tf.where(valid, points, big), axis=1, keepdims=True)
    upper = tf.reduce_max(tf.where(valid, points, -big), axis=1, keepdims=True)
    scale = upper - lower
    scale = tf.where(tf.equal(scale, 0.0), tf.ones_like(scale), scale)
    scaled = (points - lower) / scale
    deltas = scaled[:, 1:] - scaled[:, :-1]
    ink = tf.concat([deltas, stroke_end[:, 1:, tf.newaxis]], axis=-1)
    ink_lengths = tf.maximum(lengths - 1, 0)
    ink_valid = tf.sequence_mask(ink_lengths, tf.shape(ink)[1])[..., tf.newaxis]
    ink = tf.where(ink_valid, ink, tf.zeros_like(ink))
    return ink, ink_lengths


def ink_to_points(ink: tf.Tensor, lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Padded ink ``[batch, T, 3]`` -> points ``[batch, T + 1, 2]`` in the unit square.

    The inverse of ``normalize_strokes`` up to float rounding: the deltas are
    summed from the dropped first point, and the drawing is moved back into
    the unit square (its box already has unit extent, or zero). Returns the
    points, their end-of-stroke flags (the first point's flag is lost in the
    ink; it is taken as 0) and the number of points (``lengths + 1``; padding
    positions hold the last point repeated and a flag of 0).
    """
    ink = tf.cast(ink, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    valid = tf.sequence_mask(lengths, tf.shape(ink)[1])
    deltas = tf.where(valid[..., tf.newaxis], ink[..., :2], 0.0)
    points = tf.concat([tf.zeros_like(deltas[:, :1]), tf.cumsum(deltas, axis=1)], axis=1)
    point_count = lengths + 1
    in_drawing = tf.sequence_mask(point_count, tf.shape(points)[1])[..., tf.newaxis]
    lower = tf.reduce_min(tf.where(in_drawing, points, tf.float32.max), axis=1, keepdims=True)
    ends = tf.where(valid, ink[..., 2], 0.0)
    ends = tf.concat([tf.zeros_like(ends[:, :1]), ends], axis=1)
    return points - lower, ends, point_count
