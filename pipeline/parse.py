"""The normalisation of one Quick, Draw! drawing: ndjson line -> ink.

``parse_line`` is the RNN tutorial's function. The pipeline validates lines
with ``ndjson_format.check_line`` and turns the points into ink with
``normalize_many``: the same ink, bit for bit, and faster. The validator
refuses a drawing whose float32 ink would overflow or need subnormal numbers
(``ndjson_format.ink_in_range``), so on what it accepts the ink is finite and
TensorFlow's normalisers (which flush subnormals to zero) give the same bits.
"""
from __future__ import annotations

import json

import numpy as np


def parse_line(ndjson_line: str) -> tuple[np.ndarray, str]:
    """The tutorial's parse_line: ink ``[points - 1, 3]`` float32 and class name.

    The ink is (dx, dy, end_of_stroke) after scaling the drawing's bounding box
    to the unit square; the first point is dropped by the deltas.
    """
    sample = json.loads(ndjson_line)
    class_name = sample["word"]
    inkarray = sample["drawing"]
    stroke_lengths = [len(stroke[0]) for stroke in inkarray]
    total_points = sum(stroke_lengths)
    np_ink = np.zeros((total_points, 3), dtype=np.float32)
    current_t = 0
    for stroke in inkarray:
        for i in [0, 1]:
            np_ink[current_t:(current_t + len(stroke[0])), i] = stroke[i]
        current_t += len(stroke[0])
        np_ink[current_t - 1, 2] = 1  # stroke_end
    lower = np.min(np_ink[:, 0:2], axis=0)
    upper = np.max(np_ink[:, 0:2], axis=0)
    scale = upper - lower
    scale[scale == 0] = 1
    np_ink[:, 0:2] = (np_ink[:, 0:2] - lower) / scale
    np_ink[1:, 0:2] -= np_ink[0:-1, 0:2]
    np_ink = np_ink[1:, :]
    return np_ink, class_name


def normalize(points: np.ndarray) -> np.ndarray:
    """parse_line's preprocessing on one drawing's validated points."""
    return normalize_many([points])[0]


def normalize_many(points: list[np.ndarray]) -> list[np.ndarray]:
    """``normalize`` of many drawings with a handful of NumPy calls in all:
    the same float32 operations element by element, so the same bits."""
    if not points:
        return []
    lengths = np.fromiter((len(p) for p in points), dtype=np.int64, count=len(points))
    starts = np.zeros(len(points), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    allp = np.concatenate(points)
    xy = allp[:, 0:2]
    lower = np.minimum.reduceat(xy, starts, axis=0)
    scale = np.maximum.reduceat(xy, starts, axis=0) - lower
    scale[scale == 0] = 1
    unit = (xy - np.repeat(lower, lengths, axis=0)) / np.repeat(scale, lengths, axis=0)
    ink = np.empty_like(allp)
    ink[1:, 0:2] = unit[1:] - unit[:-1]
    ink[:, 2] = allp[:, 2]
    return [ink[s + 1:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
