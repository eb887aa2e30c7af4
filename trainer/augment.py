"""Stroke augmentation of training drawings, in TensorFlow ops for tf.data.

Twenty drawings of a class are too few to learn what stays the same when
people draw it: a cat drawn wider, slanted, turned or shakier is still a
cat. Each training drawing is therefore decoded from its ink back to points,
changed, and normalised again the way the tutorial's ``parse_line`` does,
so the model always sees ink of the same kind as at eval and serving time.
The changes: the whole drawing scaled per axis, sheared and rotated, every
point moved a little, some points inside strokes dropped and some whole
strokes dropped (never the one with the most points). Random numbers come from stateless ops
seeded per example, so a seed gives the same augmented drawing every time.
"""
from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from trainer.preprocess import ink_to_points, normalize_strokes


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How strongly drawings are changed; zero turns a change off."""
    scale: float = 0.2          # each axis scaled by a factor in [1 - scale, 1 + scale]
    shear: float = 0.2          # horizontal shear factor in [-shear, shear]
    rotation: float = 15.0      # degrees, in [-rotation, rotation]
    jitter: float = 0.01        # standard deviation of each point's move (unit-square units)
    drop_points: float = 0.1    # probability that a point inside a stroke is dropped
    drop_strokes: float = 0.1   # probability that a stroke is dropped (never the longest)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _affine(seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """A random 2x2 matrix: per-axis scale, then shear, then rotation."""
    u = tf.random.stateless_uniform([4], seed, minval=-1.0, maxval=1.0)
    scale = tf.linalg.diag(1.0 + config.scale * u[:2])
    shear = tf.stack([[1.0, config.shear * u[2]], [0.0, 1.0]])
    angle = math.radians(config.rotation) * u[3]
    cos, sin = tf.cos(angle), tf.sin(angle)
    rotation = tf.stack([[cos, -sin], [sin, cos]])
    return rotation @ shear @ scale


def augment_points(points: tf.Tensor, ends: tf.Tensor, seed: tf.Tensor,
                   config: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """One drawing's points ``[n, 2]`` and end-of-stroke flags ``[n]``, changed.

    ``seed`` is a stateless seed (two int32 or int64). Stroke ends and
    starts are never dropped as points, so every kept stroke keeps its
    shape's ends and its flag. The stroke with the most points (usually the
    outline) always stays.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    n = tf.shape(points)[0]
    centre = (tf.reduce_min(points, axis=0) + tf.reduce_max(points, axis=0)) / 2.0
    moved = tf.linalg.matvec(_affine(seeds[0], config), points - centre)
    moved += config.jitter * tf.random.stateless_normal([n, 2], seeds[1])

    is_end = ends > 0.5
    starts = tf.concat([[True], is_end[:-1]], axis=0)
    interior = ~(starts | is_end)
    keep = ~(interior & (tf.random.stateless_uniform([n], seeds[2]) < config.drop_points))
    stroke = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    strokes = stroke[-1] + 1
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(stroke), stroke, strokes)
    kept_strokes = (tf.random.stateless_uniform([strokes], seeds[3]) >= config.drop_strokes) | \
        tf.equal(tf.range(strokes), tf.argmax(sizes, output_type=tf.int32))
    keep &= tf.gather(kept_strokes, stroke)
    return tf.boolean_mask(moved, keep), tf.boolean_mask(ends, keep)


def augment_ink(ink: tf.Tensor, length: tf.Tensor, seed: tf.Tensor,
                config: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """One drawing's ink ``[T, 3]`` (first ``length`` rows real) -> augmented ink and length.

    Decodes the ink to points in the unit square, augments them and
    normalises them again with the serving graph's ``normalize_strokes``
    (the tutorial's ``parse_line``), so the result is valid, finite ink. A
    drawing left with a single point (no ink) is returned unchanged.
    """
    length = tf.cast(length, tf.int32)
    points, ends, count = ink_to_points(ink[tf.newaxis, :length], length[tf.newaxis])
    points, ends = augment_points(points[0, :count[0]], ends[0, :count[0]], seed, config)
    new_ink, new_length = normalize_strokes(points[tf.newaxis, :, 0], points[tf.newaxis, :, 1],
                                            ends[tf.newaxis], tf.shape(ends)[:1])
    return tf.cond(new_length[0] > 0, lambda: (new_ink[0], new_length[0]),
                   lambda: (ink[:length], length))
