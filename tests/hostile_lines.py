"""Hostile ndjson lines, each with the reason ``ndjson_format.check_line`` must give.

Every line names the class ``cat`` where it names one, so that a file of them
is valid input for a run whose only other class files are real ones.
"""
from __future__ import annotations

import json

SQUARE = [[[0, 10, 10], [0, 0, 10]]]


def record(word: object = "cat", drawing: object = SQUARE, **extra) -> bytes:
    """One line; ``json.dumps`` escapes lone surrogates as ``\\udxxx``."""
    return json.dumps({"word": word, "key_id": "1", **extra, "drawing": drawing}).encode()


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def many_points(n: int) -> bytes:
    return record(drawing=[[list(range(n)), list(range(n))]])


HOSTILE: list[tuple[bytes, str]] = [
    (b'{"word": "cat", "drawing": [[[[1], 1, 3], [2, 3, 4]]]}', "non_numeric_coordinate"),
    (deep(100_000), "invalid_json"),
    (b'{"word": "cat", "x": ' + deep(100_000) + b', "drawing": [[[1, 2], [3, 4]]]}', "invalid_json"),
    (b'{"word": "cat", "x": NaN, "y": ' + deep(100_000) + b"}", "invalid_json"),
    (record(word="\ud800"), "bad_word"),
    (record(word="ca\nt"), "bad_word"),
    (record(word="c\u0000at"), "bad_word"),
    (record(word="cat "), "bad_word"),
    (record(drawing=[[[0, 1e300], [0, 1]]]), "non_finite_coordinate"),
    (b'{"word": "cat", "drawing": [[[0, 1e999], [0, 1]]]}', "non_finite_coordinate"),
    (b'{"word": "cat", "drawing": [[[0, NaN], [0, 1]]]}', "non_finite_coordinate"),
    (record(drawing=[[[0, "12"], [0, 1]]]), "non_numeric_coordinate"),
    (record(drawing=[[[0, True], [0, 1]]]), "non_numeric_coordinate"),
    (record(drawing=[[[0, None], [0, 1]]]), "non_numeric_coordinate"),
    (b'{"word": "cat", "drawing": [[[0, 1], [0, \xff]]]}', "invalid_utf8"),
    (b'{"drawing": [[1, 2]]}', "missing_word"),
    (record(drawing=[[1, 2]]), "bad_stroke"),
    (record(key_id=["1"]), "bad_key_id"),
    (record(key_id="7" * 129), "bad_key_id"),
    (record(recognized="yes"), "bad_metadata"),
    (b"\x00\x01\x02", "invalid_json"),
    (many_points(2_000), "too_many_points"),  # with --max_points=1000
]
