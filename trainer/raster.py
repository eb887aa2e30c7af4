"""Drawings rendered as small images from their ink, in TensorFlow ops.

The raster CNN sees a drawing as a picture, which is what people recognise,
rather than as a sequence of pen moves. Rendering from the normalised ink
(not from pixels stored in the records) keeps the model under the trainer's
contract: it trains on the same TFRecords, and its export renders the raw
strokes it is served after the same normalisation. Each segment is sampled
every half pixel and each sample is splatted bilinearly onto its four
nearest pixels (a pixel keeps its largest weight), so lines are about two
pixels wide and anti-aliased, at a cost that grows with the length of the
ink rather than with points x pixels. A second channel carries the stroke
order: the same lines, brighter where the drawing began.
"""
from __future__ import annotations

import tensorflow as tf

from trainer.preprocess import ink_to_points

RASTER = "raster"
CHANNELS = 2
MARGIN = 1.0        # pixels left free on each side of the drawing's box
SPACING = 0.5       # pixels between samples along a segment
LAST_ORDER = 0.25   # the order channel's intensity at the drawing's last point


def render(ink: tf.Tensor, lengths: tf.Tensor, size: int) -> tf.Tensor:
    """Padded ink ``[B, T, 3]`` -> images ``[B, size, size, CHANNELS]`` in [0, 1].

    The drawing's box (the unit square after normalisation) fills the image
    but a margin; x runs across, y down, as drawn. Consecutive points of a
    stroke are joined; a point that ends its stroke (or a one-point stroke)
    is drawn as a dot. Padding draws nothing.
    """
    points, ends, count = ink_to_points(ink, lengths)
    batch = tf.shape(points)[0]
    index = tf.range(tf.shape(points)[1])[tf.newaxis]
    points = MARGIN + points * (size - 1 - 2 * MARGIN)
    following = tf.concat([points[:, 1:], points[:, -1:]], axis=1)
    joined = (ends < 0.5) & (index + 1 < count[:, tf.newaxis])
    order = 1.0 - (1.0 - LAST_ORDER) * tf.cast(index, tf.float32) / tf.cast(
        tf.maximum(count - 1, 1), tf.float32)[:, tf.newaxis]
    drawn = tf.where(index < count[:, tf.newaxis])                     # [S, 2]: (drawing, point)
    start = tf.gather_nd(points, drawn)
    step = tf.gather_nd(tf.where(joined[..., tf.newaxis], following, points), drawn) - start
    samples = tf.cast(tf.math.ceil(tf.norm(step, axis=1) / SPACING), tf.int32) + 1
    along = tf.ragged.range(samples)
    segment = along.value_rowids()
    t = tf.cast(along.flat_values, tf.float32) / tf.cast(
        tf.maximum(tf.gather(samples, segment) - 1, 1), tf.float32)
    position = tf.gather(start, segment) + t[:, tf.newaxis] * tf.gather(step, segment)
    corner = tf.floor(position)
    frac = position - corner
    corner = tf.cast(corner, tf.int32)
    owner = tf.cast(tf.gather(drawn[:, 0], segment), tf.int32)
    brightness = tf.gather(tf.gather_nd(order, drawn), segment)
    cells, weights = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
            wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
            x, y = corner[:, 0] + dx, corner[:, 1] + dy
            inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
            cells.append(tf.where(inside, (owner * size + y) * size + x, batch * size * size))
            weights.append(wx * wy)
    cells, weights = tf.concat(cells, 0), tf.concat(weights, 0)
    slots = batch * size * size + 1                                      # the last: outside
    lines = tf.math.unsorted_segment_max(weights, cells, slots)[:-1]
    ordered = tf.math.unsorted_segment_max(weights * tf.tile(brightness, [4]), cells,
                                           slots)[:-1]
    images = tf.maximum(tf.stack([lines, ordered], axis=-1), 0.0)
    return tf.reshape(images, [batch, size, size, CHANNELS])
