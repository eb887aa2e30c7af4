"""The Example encoding of validated drawings (ndjson_format.check_line + normalize)."""
import numpy as np
import pytest

from ndjson_format import check_line
from pipeline import example
from pipeline.parse import normalize


def test_hand_encoded_example_parses_like_a_tf_example(real_lines):
    import tensorflow as tf

    import tfrecord_schema as schema

    line = real_lines[123]
    d = check_line(line)
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
    d = check_line(real_lines[5])
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


@pytest.mark.parametrize("key_id, as_int", [
    ("5201136883597312", 5201136883597312),
    ("0", 0),
    ("9223372036854775807", 2 ** 63 - 1),
    ("9223372036854775808", None),
    ("00012", None),
    ("-5", None),
    ("+5", None),
    ("12 ", None),
    ("\u0663", None),
    ("abc-12", None),
    ("\u00e9t\u00e9", None),
    ("", None),
])
def test_key_id_is_stored_exactly_as_int64_or_as_text(key_id, as_int):
    import tensorflow as tf

    import tfrecord_schema as schema

    assert schema.key_id_int(key_id) == as_int
    ink = np.zeros((3, 3), np.float32)
    data = example.drawing_example(ink, 0, "cat", key_id, "FR", True, "")
    f = tf.train.Example.FromString(data).features.feature
    assert (schema.KEY_ID in f, schema.KEY_ID_TEXT in f) == (as_int is not None, as_int is None)
    parsed = tf.io.parse_single_example(data, schema.feature_spec(tf, with_metadata=True))
    int_value = parsed[schema.KEY_ID].numpy()[0]
    assert int_value == (schema.NO_INT_KEY_ID if as_int is None else as_int)
    assert schema.key_id_of(int_value, parsed[schema.KEY_ID_TEXT].numpy()[0]) == key_id
    features = {schema.INK: example.float_feature(ink.reshape(-1)),
                schema.SHAPE: example.int64_feature(ink.shape),
                schema.CLASS_INDEX: example.int64_feature([0]),
                schema.WORD: example.bytes_feature([b"cat"]),
                schema.COUNTRYCODE: example.bytes_feature([b"FR"]),
                schema.RECOGNIZED: example.int64_feature([1]),
                schema.TIMESTAMP: example.int64_feature([0])}
    if as_int is None:
        features[schema.KEY_ID_TEXT] = example.bytes_feature([key_id.encode()])
    else:
        features[schema.KEY_ID] = example.int64_feature([as_int])
    assert data == example.encode_example(features)
