"""The Quick, Draw! ndjson format and its one validator.

Every reader of drawings (the pipeline, ``render``, ``predict``, serving) goes
through ``check_line`` or ``check_strokes``, so they accept and refuse exactly
the same lines, for the same named reasons. The validator is total: any bytes
become a ``Drawing`` or a ``Reject``; it never raises. It imports neither Beam
nor TensorFlow, so the trainer and the serving code can use it too.

A line is a JSON object with a ``word`` (the class) and a ``drawing``: a list
of strokes, each ``[[x...], [y...]]`` (simplified format) or
``[[x...], [y...], [t...]]`` (raw format; ``t`` is not used). The checks run in
the order of ``REASONS``; the first failing one names the reject.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import orjson

import lenient_json
from dataset_categories import CATEGORIES


# A key_id is kept with every candidate drawing and written into its record: a
# long one would make a worker's unit of input weigh more (the dataset's are 16 digits).
MAX_KEY_ID_CHARS = 128


class Limits(NamedTuple):
    """Caps on one line; 0 means no cap. Bytes are checked before parsing and
    points before any array is built, so an oversized line costs little."""

    max_points: int = 10000
    max_bytes: int = 1_000_000
    max_strokes: int = 0


class Drawing(NamedTuple):
    """One valid drawing. ``points`` keeps the absolute coordinates so that the
    ink, the raster and the tf.Transform input can all be derived later."""

    word: str
    key_id: str
    countrycode: str
    recognized: bool
    timestamp: str
    points: np.ndarray  # float32 [n, 3]: x, y, 1.0 on the last point of a stroke


class Reject(NamedTuple):
    """A line that is not a valid drawing. ``word`` is the class the line
    counts towards: its own valid word, else the class of its file, else None."""

    reason: str
    word: str | None = None


# Reject reasons, in the order the checks run.
TOO_MANY_BYTES = "too_many_bytes"
BLANK_LINE = "blank_line"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_WORD = "missing_word"
BAD_WORD = "bad_word"
WRONG_CLASS = "wrong_class"
BAD_KEY_ID = "bad_key_id"
BAD_METADATA = "bad_metadata"
MISSING_DRAWING = "missing_drawing"
BAD_DRAWING = "bad_drawing"
EMPTY_DRAWING = "empty_drawing"
TOO_MANY_STROKES = "too_many_strokes"
BAD_STROKE = "bad_stroke"
EMPTY_STROKE = "empty_stroke"
XY_LENGTH_MISMATCH = "xy_length_mismatch"
TOO_MANY_POINTS = "too_many_points"
SINGLE_POINT = "single_point"
NON_NUMERIC = "non_numeric_coordinate"
NON_FINITE = "non_finite_coordinate"
INK_OUT_OF_RANGE = "ink_out_of_range"

REASONS: dict[str, str] = {
    TOO_MANY_BYTES: "the line is longer than max_bytes",
    BLANK_LINE: "the line is empty or only whitespace",
    INVALID_UTF8: "the line is not valid UTF-8",
    INVALID_JSON: "the line is not JSON (or is nested more than 1,024 levels deep)",
    NOT_AN_OBJECT: "the JSON value is not an object",
    MISSING_WORD: "no 'word', or it is not a string, or it is blank",
    BAD_WORD: "'word' has a non-printable character (control, newline, lone surrogate, ...) "
              "or leading/trailing whitespace",
    WRONG_CLASS: "'word' is not the class the file is named after",
    BAD_KEY_ID: "'key_id' is neither a string nor an integer, is not valid text, or is longer than 128 characters",
    BAD_METADATA: "'countrycode' or 'timestamp' is not a string, or 'recognized' not a boolean",
    MISSING_DRAWING: "no 'drawing'",
    BAD_DRAWING: "'drawing' is not a list",
    EMPTY_DRAWING: "'drawing' has no stroke",
    TOO_MANY_STROKES: "more strokes than max_strokes",
    BAD_STROKE: "a stroke is not [[x...], [y...]] or [[x...], [y...], [t...]]",
    EMPTY_STROKE: "a stroke has no point",
    XY_LENGTH_MISMATCH: "a stroke has different numbers of x and y",
    TOO_MANY_POINTS: "more points than max_points",
    SINGLE_POINT: "the drawing has fewer than two points",
    NON_NUMERIC: "a coordinate is not a number (a string, boolean, null, list or object)",
    NON_FINITE: "a coordinate is NaN or infinite, or overflows float32",
    INK_OUT_OF_RANGE: "the normalised ink would leave float32's normal numbers: x or y spans "
                      "more than float32 holds, or a value below 1.2e-38 arises (TensorFlow "
                      "flushes those to zero, NumPy keeps them)",
}

# File name endings of ndjson input, longest first.
NDJSON_SUFFIXES = (".ndjson.gz", ".jsonl.gz", ".ndjson", ".jsonl", ".json")

# The largest float64 magnitude that rounds to a finite float32: 2**128 - 2**103.
_FLOAT32_LIMIT = float(2 ** 128 - 2 ** 103)


def file_class(path: str) -> str | None:
    """The class a file is named after, or None.

    A file is a class file when its name, less ``.ndjson``/``.jsonl``/``.json``
    (and ``.gz``), is one of the dataset's 345 category names exactly
    (``cat.ndjson.gz``, ``The Eiffel Tower.ndjson``): every line must then be a
    drawing of that class. Any other name (``mixed.ndjson``, ``drawings.ndjson``,
    ``Cat.ndjson``) holds drawings of any classes.
    """
    name = path.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in NDJSON_SUFFIXES:
        if name.endswith(suffix):
            stem = name[:-len(suffix)]
            return stem if stem in CATEGORIES else None
    return None


def check_line(line: bytes | str, limits: Limits = Limits(),
               expected_word: str | None = None) -> Drawing | Reject:
    """One ndjson line -> a ``Drawing``, or a ``Reject`` with its reason; never raises.

    ``expected_word`` is the class of the line's file (``file_class``): a line
    of another class is rejected as ``wrong_class`` instead of becoming a
    drawing of a new class. A UTF-8 byte-order mark and surrounding whitespace
    (Windows line endings) are accepted.
    """
    if not isinstance(line, bytes):
        line = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)
    sample = _load(line, limits)
    if type(sample) is not dict:
        return Reject(sample.reason, expected_word)

    word = sample.get("word")
    if type(word) is not str or not word.strip():
        return Reject(MISSING_WORD, expected_word)
    if not word.isprintable() or word.strip() != word:
        return Reject(BAD_WORD, expected_word)
    if expected_word is not None and word != expected_word:
        return Reject(WRONG_CLASS, expected_word)

    key_id = sample.get("key_id")
    countrycode = sample.get("countrycode")
    timestamp = sample.get("timestamp")
    recognized = sample.get("recognized")
    if not (type(key_id) is str and type(countrycode) is str and type(timestamp) is str
            and type(recognized) is bool and key_id.isascii() and len(key_id) <= MAX_KEY_ID_CHARS
            and countrycode.isascii()
            and timestamp.isascii()):  # else the general case, off the dataset's path
        metadata = _metadata(key_id, countrycode, timestamp, recognized)
        if type(metadata) is str:
            return Reject(metadata, word)
        key_id, countrycode, timestamp, recognized = metadata

    strokes = sample.get("drawing")
    if strokes is None:
        return Reject(MISSING_DRAWING, word)
    points = _points(strokes, limits, _only_numbers_follow_drawing(line))
    if type(points) is str:
        return Reject(points, word)
    return Drawing(word, key_id, countrycode, recognized, timestamp, points)


def load_line(line: bytes | str, limits: Limits = Limits()) -> dict | Reject:
    """The line-level rules alone: one line -> its JSON object, or a ``Reject``
    (too_many_bytes ... not_an_object); never raises. For readers whose lines
    need not name a class (``predict``), followed by ``check_strokes``."""
    if not isinstance(line, bytes):
        line = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)
    return _load(line, limits)


def _load(line: bytes, limits: Limits) -> dict | Reject:
    if limits.max_bytes and len(line) > limits.max_bytes:
        return Reject(TOO_MANY_BYTES)
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    line = line.strip()
    if not line:
        return Reject(BLANK_LINE)
    try:
        sample = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        try:
            sample = lenient_json.loads(line, str(e))
        except UnicodeDecodeError:
            return Reject(INVALID_UTF8)
        except ValueError:
            return Reject(INVALID_JSON)
    return sample if type(sample) is dict else Reject(NOT_AN_OBJECT)


def check_strokes(strokes: object, limits: Limits = Limits()) -> np.ndarray | Reject:
    """A decoded ``drawing`` value -> float32 ``[n, 3]`` points (x, y, 1.0 at a
    stroke's end), or a ``Reject`` (without a word); never raises."""
    if strokes is None:
        return Reject(MISSING_DRAWING)
    points = _points(strokes, limits, False)
    return Reject(points) if type(points) is str else points


def _is_text(s: str) -> bool:
    """True when ``s`` can be written as UTF-8 (no lone surrogate)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _metadata(key_id: object, countrycode: object, timestamp: object,
              recognized: object) -> tuple[str, str, str, bool] | str:
    """The metadata with absent (or null) fields defaulted, or the reject reason."""
    if key_id is None:
        key_id = ""
    elif type(key_id) is int:
        key_id = str(key_id)
    elif type(key_id) is not str or not _is_text(key_id):
        return BAD_KEY_ID
    if len(key_id) > MAX_KEY_ID_CHARS:
        return BAD_KEY_ID
    texts = []
    for value in (countrycode, timestamp):
        if value is None:
            value = ""
        elif type(value) is not str or not _is_text(value):
            return BAD_METADATA
        texts.append(value)
    if recognized is None:
        recognized = False
    elif type(recognized) is not bool:
        return BAD_METADATA
    return key_id, texts[0], texts[1], recognized


def _points(strokes: object, limits: Limits, numbers_only: bool) -> np.ndarray | str:
    """The validated points of a ``drawing`` value, or the reason it is not one.

    The point count is checked before each stroke's coordinates are copied, so
    a line of millions of points is refused having copied at most max_points.
    """
    if type(strokes) is not list:
        return BAD_DRAWING
    if not strokes:
        return EMPTY_DRAWING
    if limits.max_strokes and len(strokes) > limits.max_strokes:
        return TOO_MANY_STROKES
    max_points = limits.max_points
    n = 0
    xs: list = []
    ys: list = []
    ends: list[int] = []
    for stroke in strokes:
        if type(stroke) is not list or len(stroke) not in (2, 3):
            return BAD_STROKE
        x, y = stroke[0], stroke[1]
        if type(x) is not list or type(y) is not list:
            return BAD_STROKE
        if not x:
            return EMPTY_STROKE
        if len(x) != len(y):
            return XY_LENGTH_MISMATCH
        n += len(x)
        if max_points and n > max_points:
            return TOO_MANY_POINTS
        xs += x
        ys += y
        ends.append(n - 1)
    if n < 2:
        return SINGLE_POINT
    if not numbers_only and not _all_numbers(xs, ys):
        return NON_NUMERIC
    try:
        xy = np.array((xs, ys))
    except (ValueError, TypeError, OverflowError):
        return NON_NUMERIC  # a coordinate that is a list
    if xy.ndim != 2:
        return NON_NUMERIC
    kind = xy.dtype.kind
    if kind == "O":  # integers beyond 64 bits, only from Python's json
        try:
            xy = xy.astype(np.float64)
        except OverflowError:
            return NON_FINITE
        except (TypeError, ValueError):
            return NON_NUMERIC
        kind = "f"
    surely_in_range = True  # integers: see _SAFE_LOW
    if kind == "f":
        magnitude = abs(xy)
        high = magnitude.max()
        if not high < _FLOAT32_LIMIT:
            return NON_FINITE  # NaN fails the comparison
        surely_in_range = _surely_in_range(magnitude, high)
    elif kind not in "iu":
        return NON_NUMERIC
    points = np.zeros((n, 3), dtype=np.float32)
    points[:, 0:2] = xy.T
    points[ends, 2] = 1.0
    if not surely_in_range and not ink_in_range(points[:, 0:2]):
        return INK_OUT_OF_RANGE
    return points


_FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32, 2**-126

# Sufficient for ``ink_in_range``: when the non-zero magnitudes lie in
# [2**-100, 2**126) and within a factor 2**70 of each other, every value of
# the normalisation is 0 or at least 2**-123 (all are multiples of a quantum
# that large) and at most 2**127. Integers (below 2**64) always are; for
# float coordinates this test is the rule's whole cost on real drawings.
_SAFE_LOW, _SAFE_HIGH, _SAFE_SPAN = 2.0 ** -100, 2.0 ** 126, 2.0 ** 70


def _surely_in_range(magnitude: np.ndarray, high: float) -> bool:
    """The sufficient test above, on the coordinates' float64 magnitudes."""
    if not high < _SAFE_HIGH:
        return False
    low = magnitude.min()
    if low == 0:
        low = magnitude.min(where=magnitude > 0, initial=np.inf)
    return low == np.inf or (low >= _SAFE_LOW and high < low * _SAFE_SPAN)


def ink_in_range(xy: np.ndarray) -> bool:
    """True when the tutorial's float32 normalisation of these coordinates
    (``[n, 2]`` float32; see ``pipeline.parse.parse_line``) stays within
    float32's normal numbers: finite, and no value of 2**-126 or less but zero.

    A range (max - min) past float32's largest number makes the ink NaN; a
    subnormal value is kept by NumPy and flushed to zero by TensorFlow on
    CPU, so the pipeline's ink and the serving graph's would differ. The CPU
    flushes a result that is subnormal before rounding, which may round up
    to 2**-126 itself: that value counts as out of range too. Every value
    parse_line computes is checked: coordinates, range, offsets from the
    minimum, unit coordinates, deltas.
    """
    with np.errstate(all="ignore"):
        lower = xy.min(axis=0)
        scale = xy.max(axis=0) - lower
        offsets = xy - lower
        scale[scale == 0] = 1
        unit = offsets / scale
        values = np.concatenate((xy.ravel(), scale, offsets.ravel(), unit.ravel(),
                                 (unit[1:] - unit[:-1]).ravel()))
    magnitude = np.abs(values)
    return bool(np.isfinite(magnitude).all()
                and not ((magnitude > 0) & (magnitude <= _FLOAT32_TINY)).any())


_NUMERIC_JSON = b"[],:-+.0123456789eE \t\r\n}"


def _only_numbers_follow_drawing(line: bytes) -> bool:
    """Fast path: when ``drawing`` is the top-level object's last key (as in the
    dataset) and only number characters follow it, no coordinate can be a
    string, boolean or null. The key is a real top-level key when an unescaped
    quote opens it (after ``{`` or ``,``) and the only ``}`` after it closes the line."""
    at = line.rfind(b'"drawing"')
    if at <= 0 or line[max(0, at - 16):at].rstrip()[-1:] not in (b",", b"{"):
        return False
    tail = line[at + 9:]
    return (tail.lstrip().startswith(b":") and not tail.translate(None, _NUMERIC_JSON)
            and tail.count(b"}") == 1)


def _all_numbers(xs: list, ys: list) -> bool:
    """True when every coordinate is an int or float (bool excluded): numpy
    would otherwise turn ``"12"`` or ``true`` into a number silently."""
    for values in (xs, ys):
        for v in values:
            t = type(v)
            if t is not int and t is not float:
                return False
    return True
