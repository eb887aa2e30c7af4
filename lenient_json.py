"""JSON that orjson refuses but Python's json reads: NaN, Infinity, numbers
that overflow a double, integers past 64 bits, lone surrogates. The
validator (``ndjson_format``) reads every line with orjson first, and a
refused line here, so that such a line gets the precise reason its value
deserves (``non_finite_coordinate``, ``bad_key_id``, ...) rather than
``invalid_json``, the same in every reader."""
from __future__ import annotations

import json

import numpy as np

# Nesting that Python's json reads whatever the caller's stack depth: it
# recurses once a level against a limit of 1,000 frames, the caller's included.
LENIENT_DEPTH = 512


def loads(line: bytes, orjson_error: str) -> object:
    """The value of a line orjson refused with ``orjson_error``, read by
    Python's json; UnicodeDecodeError if it is not UTF-8, another ValueError
    if it is no JSON that this reads. Only lines nested at most LENIENT_DEPTH
    levels reach Python's recursive parser, so that a reader deep in Beam's or
    a server's stack gives the same answer as any other."""
    if "depth" in orjson_error or nesting(line) > LENIENT_DEPTH:
        raise ValueError("nested too deeply")
    text = line.decode("utf-8")
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise ValueError("nested too deeply for this stack") from None


def nesting(line: bytes) -> int:
    """How many arrays and objects ``line`` opens at its deepest, brackets in
    strings left out; linear in the line's length, whatever its quotes."""
    codes = np.frombuffer(line, np.uint8)
    index = np.arange(len(codes), dtype=np.int32)  # lines are at most --max_bytes, far below 2 GB
    backslashes = index - np.maximum.accumulate(np.where(codes == 0x5C, np.int32(-1), index))  # the run ending here
    del index
    escaped = np.concatenate(([False], backslashes[:-1] % 2 == 1))
    del backslashes
    outside = np.cumsum((codes == 0x22) & ~escaped, dtype=np.int32) % 2 == 0
    steps = (np.isin(codes, (0x5B, 0x7B)) & outside).astype(np.int8) - (np.isin(codes, (0x5D, 0x7D)) & outside)
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def _parse_int(digits: str) -> int | float:
    """A JSON integer; past Python's limit on the digits ``int`` converts (4,300),
    its float (infinite), so that a long integer is a number that overflows
    (``non_finite_coordinate``, ``bad_key_id``) like a 400-digit one, not
    ``invalid_json``. ``float`` reads any number of digits in linear time."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)
