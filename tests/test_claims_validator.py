"""README.md 'Validation: one set of rules': the exact limits the README
gives for a line's nesting depth and a key_id's length."""
from __future__ import annotations

import json

import pytest

import ndjson_format as nf


def nested(depth: int) -> str:
    """A valid line whose JSON nests ``depth`` levels, the object itself included."""
    inner = depth - 1
    return '{"word": "cat", "x": %s1%s, "drawing": [[[1, 2], [3, 4]]]}' % ("[" * inner, "]" * inner)


def test_a_line_nested_1024_levels_passes_and_1025_is_invalid_json():
    """README.md:370 (one JSON object, nested at most 1,024 levels) and :411
    (`invalid_json`: ... or is nested more than 1,024 levels deep)."""
    assert isinstance(nf.check_line(nested(1024)), nf.Drawing)
    assert nf.check_line(nested(1025)).reason == nf.INVALID_JSON


@pytest.mark.parametrize("key_id, accepted", [("7" * 128, True), ("7" * 129, False),
                                              ("é" * 128, True), ("é" * 129, False)])
def test_a_key_id_of_at_most_128_characters(key_id, accepted):
    """README.md:416: `bad_key_id`: ... or is longer than 128 characters."""
    line = json.dumps({"word": "cat", "key_id": key_id, "drawing": [[[1, 2], [3, 4]]]})
    result = nf.check_line(line)
    if accepted:
        assert isinstance(result, nf.Drawing)
    else:
        assert result.reason == nf.BAD_KEY_ID
