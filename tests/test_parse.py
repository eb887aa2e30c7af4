"""parse_drawing + normalize against the tutorial's parse_line, and the Example encoding."""
import json

import numpy as np
import pytest

from pipeline import example, parse
from pipeline.parse import Reject, normalize, parse_drawing, parse_line


def test_ink_is_bit_identical_to_parse_line_on_every_real_drawing(real_lines):
    assert len(real_lines) == 8600
    for line in real_lines:
        expected, word = parse_line(line)
        drawing = parse_drawing(line)
        got = normalize(drawing.points)
        assert drawing.word == word
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes(), line[:80]


def test_raw_format_floats_and_timing_are_read_like_parse_line(real_lines):
    for line in real_lines[::50]:
        d = json.loads(line)
        d["drawing"] = [[[x * 3.7 + 0.123 for x in s[0]], [y * 2.1 - 5.5 for y in s[1]],
                         list(range(len(s[0])))] for s in d["drawing"]]
        raw = json.dumps(d)
        expected, _ = parse_line(raw)
        assert normalize(parse_drawing(raw).points).tobytes() == expected.tobytes()


def test_bom_and_windows_line_ending_are_tolerated(real_lines):
    line = real_lines[0]
    d = parse_drawing(("\ufeff" + line + "\r\n").encode("utf-8"))
    assert normalize(d.points).tobytes() == parse_line(line)[0].tobytes()


@pytest.mark.parametrize("line, reason", [
    ('{"word": "cat", "drawing": [[[1, 2], [3, 4]]', parse.INVALID_JSON),
    ("[1, 2]", parse.NOT_AN_OBJECT),
    ('{"drawing": [[[1, 2], [3, 4]]]}', parse.MISSING_WORD),
    ('{"word": "cat"}', parse.MISSING_DRAWING),
    ('{"word": "cat", "drawing": "strokes"}', parse.BAD_DRAWING),
    ('{"word": "cat", "drawing": []}', parse.EMPTY_DRAWING),
    ('{"word": "cat", "drawing": [[[1, 2]]]}', parse.BAD_STROKE),
    ('{"word": "cat", "drawing": [[[], []]]}', parse.EMPTY_STROKE),
    ('{"word": "cat", "drawing": [[[1, 2, 3], [1, 2]]]}', parse.XY_LENGTH_MISMATCH),
    ('{"word": "cat", "drawing": [[[1, "2"], [1, 2]]]}', parse.NON_NUMERIC),
    ('{"word": "cat", "drawing": [[[1, true], [1, 2]]]}', parse.NON_NUMERIC),
    ('{"word": "cat", "drawing": [[[1, null], [1, 2]]]}', parse.NON_NUMERIC),
    ('{"word": "cat", "drawing": [[[1, NaN], [1, 2]]]}', parse.NON_FINITE),
    ('{"word": "cat", "drawing": [[[1, 1e999], [1, 2]]]}', parse.NON_FINITE),
    ('{"word": "cat", "drawing": [[[1], [2]]]}', parse.SINGLE_POINT),
    ("   ", parse.BLANK_LINE),
])
def test_each_kind_of_bad_line_has_its_reason(line, reason):
    with pytest.raises(Reject) as e:
        parse_drawing(line)
    assert e.value.reason == reason
    assert e.value.word == (None if reason in (parse.INVALID_JSON, parse.NOT_AN_OBJECT,
                                               parse.MISSING_WORD, parse.BLANK_LINE) else "cat")


def test_caps_on_points_and_bytes(real_lines):
    line = real_lines[0]
    n = len(parse_drawing(line).points)
    with pytest.raises(Reject) as e:
        parse_drawing(line, max_points=n - 1)
    assert e.value.reason == parse.TOO_MANY_POINTS
    with pytest.raises(Reject) as e:
        parse_drawing(line, max_bytes=len(line) - 1)
    assert e.value.reason == parse.TOO_MANY_BYTES
    assert parse_drawing(line, max_points=n, max_bytes=len(line)).word == "The Eiffel Tower"


def test_hand_encoded_example_parses_like_a_tf_example(real_lines):
    import tensorflow as tf

    import tfrecord_schema as schema

    line = real_lines[123]
    d = parse_drawing(line)
    ink = normalize(d.points)
    img = np.arange(64 * 64, dtype=np.int64).reshape(64, 64) % 256
    data = example.drawing_example(ink, 7, d.word, d.key_id, d.countrycode, d.recognized, d.timestamp, img)
    proto = tf.train.Example.FromString(data)
    f = proto.features.feature
    assert np.array(f[schema.INK].float_list.value, np.float32).tobytes() == ink.reshape(-1).tobytes()
    assert list(f[schema.SHAPE].int64_list.value) == [len(ink), 3]
    assert list(f[schema.CLASS_INDEX].int64_list.value) == [7]
    assert f[schema.WORD].bytes_list.value[0].decode() == d.word
    assert f[schema.KEY_ID].int64_list.value[0] == int(d.key_id)
    assert list(f[schema.IMG_64].int64_list.value) == list(img.reshape(-1))
    parsed = tf.io.parse_single_example(data, schema.feature_spec(tf, with_metadata=True))
    assert parsed[schema.COUNTRYCODE].numpy()[0].decode() == d.countrycode
    assert parsed[schema.TIMESTAMP].numpy()[0] == example.timestamp_seconds(d.timestamp) > 1.4e9
    assert example.int64_feature([-1]) == tf.train.Feature(
        int64_list=tf.train.Int64List(value=[-1])).SerializeToString()


def test_drawing_example_equals_the_generic_encoder(real_lines):
    import tfrecord_schema as schema
    d = parse_drawing(real_lines[5])
    ink = normalize(d.points)
    features = {
        schema.INK: example.float_feature(ink.reshape(-1)),
        schema.SHAPE: example.int64_feature(ink.shape),
        schema.CLASS_INDEX: example.int64_feature([3]),
        schema.KEY_ID: example.int64_feature([int(d.key_id)]),
        schema.WORD: example.bytes_feature([d.word.encode()]),
        schema.COUNTRYCODE: example.bytes_feature([d.countrycode.encode()]),
        schema.RECOGNIZED: example.int64_feature([int(d.recognized)]),
        schema.TIMESTAMP: example.int64_feature([example.timestamp_seconds(d.timestamp)]),
    }
    assert example.drawing_example(ink, 3, d.word, d.key_id, d.countrycode, d.recognized,
                                   d.timestamp) == example.encode_example(features)
