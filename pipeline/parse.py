"""The parsing of one Quick, Draw! drawing: ndjson line -> normalised ink.

``parse_line`` is the RNN tutorial's function; the pipeline uses the faster,
validating ``parse_drawing``, which produces bit-identical ink.
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
