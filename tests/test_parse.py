"""The Example encoding of validated drawings (ndjson_format.check_line + normalize),
and the normalisers' agreement on every drawing the validator accepts."""
import functools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndjson_format as nf
from ndjson_format import Reject, check_line
from pipeline import example
from pipeline.parse import normalize, parse_line


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


# --- Finite ink: what the validator accepts, every normaliser turns into the same finite ink

F32 = np.finfo(np.float32)
EXTREMES = [0.0, -0.0, 1.0, 3e38, -3e38, float(F32.max), -float(F32.max), float(F32.tiny),
            1e-45, -1e-45, 2.0 ** -100, 2.0 ** 126, 2.0 ** 127, -2.0 ** 127, 2.0 ** 103, 1e-30,
            1e10, 2 ** 64, -2 ** 63, 255]
coordinates = (st.floats(allow_nan=False, allow_infinity=False, width=32)
               | st.floats(-1e6, 1e6) | st.integers(-2 ** 65, 2 ** 65)
               | st.sampled_from(EXTREMES)
               | st.builds(lambda m, e: m * 2.0 ** e,  # any float32, any exponent
                           st.integers(-2 ** 24 + 1, 2 ** 24 - 1), st.integers(-149, 103)))


def near(base: float, steps: int) -> float:
    """``base`` moved by a few float32 steps: offsets as small as float32 allows."""
    return base + steps * 2.0 ** max(math.frexp(base)[1] - 24, -149)


@st.composite
def drawings(draw):
    """1-3 strokes of 1-6 points; x and y may come from very different ranges,
    and points may lie a float32 step or two from each other."""
    bases = draw(st.lists(coordinates, min_size=1, max_size=3))
    point = coordinates | st.builds(near, st.sampled_from(bases), st.integers(-2, 2))
    strokes = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 6))
        strokes.append([draw(st.lists(point, min_size=n, max_size=n)) for _ in "xy"])
    return strokes


@st.composite
def spread(draw):
    """2-6 values at two magnitudes up to 2**130 apart, each a few float32 steps
    from a power of two: the values that come nearest the shortcut's bounds."""
    low = draw(st.sampled_from(range(-150, 128)))
    exponents = [low, min(127, low + draw(st.sampled_from(range(131))))]
    n = draw(st.integers(2, 6))
    return [draw(st.sampled_from([-1.0, 1.0])) * 2.0 ** draw(st.sampled_from(exponents))
            * (1 + draw(st.sampled_from(range(-3, 4))) * 2.0 ** -23) for _ in range(n)]


any_drawing = drawings() | spread().map(lambda xs: [[xs, xs[::-1]]])


@functools.lru_cache(maxsize=None)
def tf_normalisers():
    """The serving signature's normalisation and the tf.Transform graph's, traced once."""
    import tensorflow as tf

    from pipeline.tft_analysis import normalize_ragged
    from trainer.preprocess import normalize_strokes

    vector = tf.TensorSpec([None], tf.float32)

    @tf.function(input_signature=[vector, vector, vector])
    def padded(x, y, ends):
        one = [tf.expand_dims(v, 0) for v in (x, y, ends)]
        return normalize_strokes(*one, tf.size(x, tf.int32)[tf.newaxis])[0][0]

    @tf.function(input_signature=[vector, vector, vector])
    def ragged(x, y, ends):
        rows = [tf.RaggedTensor.from_row_lengths(v, tf.shape(v)) for v in (x, y, ends)]
        return normalize_ragged(tf, *rows)[0]

    return padded, ragged


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_drawing)
def test_every_accepted_drawing_has_the_same_finite_ink_in_every_normaliser(strokes):
    line = json.dumps({"word": "cat", "drawing": strokes})
    result = check_line(line)
    if isinstance(result, Reject):
        assert result.reason in (nf.NON_FINITE, nf.INK_OUT_OF_RANGE, nf.SINGLE_POINT)
        return
    expected, _ = parse_line(line)
    assert np.isfinite(expected).all()
    x, y, ends = result.points.T
    inks = [normalize(result.points)] + [f(x, y, ends).numpy() for f in tf_normalisers()]
    for ink in inks:
        assert ink.dtype == np.float32 and ink.tobytes() == expected.tobytes()


def test_the_validators_shortcut_never_accepts_what_the_exact_check_refuses():
    """At the shortcut's bounds, exhaustively: two points a float32 step apart
    near 2**low (the smallest offset) and one at +-2**high (the largest
    range), for every pair of exponents float32 has."""
    for low in range(-149, 128):
        base = 2.0 ** low
        for high in range(low, 128):
            for far in (2.0 ** high, -2.0 ** high):
                xy = np.array(([base, near(base, 1), far], [0.0, 0.0, 0.0]))
                magnitude = abs(xy)
                if nf._surely_in_range(magnitude, magnitude.max()):
                    assert nf.ink_in_range(xy.T.astype(np.float32)), (low, high, far)
