"""Drawings rendered as small images from their ink, in TensorFlow ops.

The raster CNN sees a drawing as a picture, which is what people recognise,
rather than as a sequence of pen moves. Rendering from the normalised ink
(not from pixels stored in the records) keeps the model under the trainer's
contract: it trains on the same TFRecords, and its export renders the raw
strokes it is served after the same normalisation. Lines are anti-aliased
(intensity falls off with the distance of a pixel's centre to the nearest
segment). A second channel carries the stroke order: the same lines,
brighter where the drawing began (by the order of each pixel's nearest
segment).
"""
from __future__ import annotations

import tensorflow as tf

from trainer.preprocess import ink_to_points

RASTER = "raster"
CHANNELS = 2
MARGIN = 1.0        # pixels left free on each side of the drawing's box
FULL_WITHIN = 0.25  # pixels from a segment at full intensity; zero from 1 pixel further
LAST_ORDER = 0.25   # the order channel's intensity at the drawing's last point


def render(ink: tf.Tensor, lengths: tf.Tensor, size: int) -> tf.Tensor:
    """Padded ink ``[B, T, 3]`` -> images ``[B, size, size, CHANNELS]`` in [0, 1].

    The drawing's box (the unit square after normalisation) fills the image
    but a margin; x runs across, y down, as drawn. Consecutive points of a
    stroke are joined; a point that ends its stroke (or a one-point stroke)
    is drawn as a dot. Padding draws nothing.
    """
    points, ends, count = ink_to_points(ink, lengths)
    n = tf.shape(points)[1]
    points = MARGIN + points * (size - 1 - 2 * MARGIN)
    following = tf.concat([points[:, 1:], points[:, -1:]], axis=1)
    index = tf.range(n)[tf.newaxis]
    joined = (ends < 0.5) & (index + 1 < count[:, tf.newaxis])
    a = points
    ab = tf.where(joined[..., tf.newaxis], following, points) - a            # [B, N, 2]
    axis = tf.range(size, dtype=tf.float32)
    gx, gy = tf.meshgrid(axis, axis)                                       # gy: rows
    centres = tf.reshape(tf.stack([gx, gy], axis=-1), [-1, 2])             # [P, 2]
    ca_dot_ab = tf.einsum("pk,bnk->bnp", centres, ab) - tf.reduce_sum(a * ab, -1)[..., None]
    ab2 = tf.reduce_sum(ab * ab, axis=-1)[..., None]
    t = tf.clip_by_value(ca_dot_ab / tf.maximum(ab2, 1e-12), 0.0, 1.0)
    ca2 = (tf.reduce_sum(centres * centres, -1)[tf.newaxis, tf.newaxis]
           - 2.0 * tf.einsum("pk,bnk->bnp", centres, a) + tf.reduce_sum(a * a, -1)[..., None])
    squared = ca2 - 2.0 * t * ca_dot_ab + t * t * ab2
    squared = tf.where((index < count[:, tf.newaxis])[..., None], squared, tf.float32.max)
    nearest = tf.argmin(squared, axis=1, output_type=tf.int32)             # [B, P]
    distance = tf.sqrt(tf.maximum(tf.reduce_min(squared, axis=1), 0.0))
    lines = tf.clip_by_value(1.0 + FULL_WITHIN - distance, 0.0, 1.0)
    order = 1.0 - (1.0 - LAST_ORDER) * tf.cast(nearest, tf.float32) / tf.cast(
        tf.maximum(count - 1, 1), tf.float32)[:, tf.newaxis]
    images = tf.stack([lines, lines * order], axis=-1)
    return tf.reshape(images, [tf.shape(ink)[0], size, size, CHANNELS])
