"""The parsing of one Quick, Draw! drawing: ndjson line -> normalised ink.

``parse_line`` is the RNN tutorial's function; the pipeline uses the faster,
validating ``parse_drawing``, which produces bit-identical ink.
"""
from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import orjson


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


class Reject(Exception):
    """A line that cannot become a training example; ``reason`` is its label
    in the rejects output and the stats."""

    def __init__(self, reason: str, word: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.word = word


# Reject reasons, in the order the checks run.
TOO_MANY_BYTES = "too_many_bytes"
BLANK_LINE = "blank_line"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_WORD = "missing_word"
MISSING_DRAWING = "missing_drawing"
BAD_DRAWING = "bad_drawing"
EMPTY_DRAWING = "empty_drawing"
BAD_STROKE = "bad_stroke"
EMPTY_STROKE = "empty_stroke"
XY_LENGTH_MISMATCH = "xy_length_mismatch"
NON_NUMERIC = "non_numeric_coordinate"
NON_FINITE = "non_finite_coordinate"
SINGLE_POINT = "single_point"
TOO_MANY_POINTS = "too_many_points"


class Drawing(NamedTuple):
    """One valid drawing. ``points`` keeps the absolute coordinates so that the
    ink, the raster and the tf.Transform input can all be derived later, and
    only for the drawings that are selected."""

    word: str
    key_id: str
    countrycode: str
    recognized: bool
    timestamp: str
    points: np.ndarray  # float32 [n, 3]: x, y, 1.0 on the last point of a stroke


def parse_drawing(line: str | bytes, max_points: int = 0, max_bytes: int = 0) -> Drawing:
    """Validates one ndjson line of either Quick, Draw! format.

    Simplified strokes are ``[[x...], [y...]]``, raw ones ``[[x...], [y...], [t...]]``
    (``t`` is ignored). Raises ``Reject`` with the reason and, when it is known
    by then, the class name. ``max_points``/``max_bytes`` of 0 mean no cap.
    """
    if isinstance(line, str):
        line = line.encode("utf-8")
    if max_bytes and len(line) > max_bytes:
        raise Reject(TOO_MANY_BYTES)
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    line = line.strip()
    if not line:
        raise Reject(BLANK_LINE)
    try:
        sample = orjson.loads(line)
    except orjson.JSONDecodeError:
        sample = _lenient_json(line)
    if not isinstance(sample, dict):
        raise Reject(NOT_AN_OBJECT)
    word = sample.get("word")
    if not isinstance(word, str) or not word.strip():
        raise Reject(MISSING_WORD)
    strokes = sample.get("drawing")
    if strokes is None:
        raise Reject(MISSING_DRAWING, word)
    if not isinstance(strokes, list):
        raise Reject(BAD_DRAWING, word)
    if not strokes:
        raise Reject(EMPTY_DRAWING, word)
    xs: list = []
    ys: list = []
    ends: list[int] = []
    for stroke in strokes:
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise Reject(BAD_STROKE, word)
        x, y = stroke[0], stroke[1]
        if not isinstance(x, list) or not isinstance(y, list):
            raise Reject(BAD_STROKE, word)
        if not x:
            raise Reject(EMPTY_STROKE, word)
        if len(x) != len(y):
            raise Reject(XY_LENGTH_MISMATCH, word)
        xs += x
        ys += y
        ends.append(len(xs) - 1)
    n = len(xs)
    if max_points and n > max_points:
        raise Reject(TOO_MANY_POINTS, word)
    if n < 2:
        raise Reject(SINGLE_POINT, word)
    xy = np.array((xs, ys)) if _only_numbers_follow_drawing(line) or _all_numbers(xs, ys) else None
    if xy is None or xy.dtype.kind not in "iuf" or xy.ndim != 2:
        raise Reject(NON_NUMERIC, word)
    if xy.dtype.kind == "f" and not np.isfinite(xy).all():
        raise Reject(NON_FINITE, word)
    points = np.zeros((n, 3), dtype=np.float32)
    points[:, 0:2] = xy.T
    points[ends, 2] = 1.0
    return Drawing(
        word=word,
        key_id=str(sample.get("key_id", "")),
        countrycode=str(sample.get("countrycode", "")),
        recognized=bool(sample.get("recognized", False)),
        timestamp=str(sample.get("timestamp", "")),
        points=points,
    )


def _lenient_json(line: bytes):
    """Python's json also reads NaN, Infinity and overflowing numbers, which
    then get the precise reason ``non_finite_coordinate`` instead of ``invalid_json``."""
    try:
        return json.loads(line)
    except ValueError:
        raise Reject(INVALID_JSON) from None


_NUMERIC_JSON = b"[],:-+.0123456789eE \t\r\n}"


def _only_numbers_follow_drawing(line: bytes) -> bool:
    """Fast path: when ``drawing`` is the record's last key (as in the dataset)
    and only number characters follow it, no coordinate can be a string,
    boolean or null."""
    at = line.rfind(b'"drawing"')
    tail = line[at + 9:]
    return at >= 0 and tail.lstrip().startswith(b":") and not tail.translate(None, _NUMERIC_JSON)


def _all_numbers(xs: list, ys: list) -> bool:
    """True when every coordinate is an int or float (bool excluded): numpy
    would otherwise turn ``"12"`` or ``true`` into a number silently."""
    for values in (xs, ys):
        for v in values:
            t = type(v)
            if t is not int and t is not float:
                return False
    return True


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
