"""ndjson_format: the one validator, on real drawings and on hostile input."""
from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndjson_format as nf
from dataset_categories import CATEGORIES
from ndjson_format import Drawing, Limits, Reject, check_line, check_strokes, file_class
from pipeline.parse import normalize, parse_line
from sample_paths import REPO

GOOD = '{"word": "cat", "key_id": "12", "drawing": [[[1, 2], [3, 4]]]}'


def good_with(**fields) -> str:
    record = {"word": "cat", "key_id": "12", "drawing": [[[1, 2], [3, 4]]]}
    record.update(fields)
    return json.dumps(record)


def assert_sound(result, expected_word: str | None = None) -> None:
    """What every result must be, whatever the input."""
    assert isinstance(result, (Drawing, Reject))
    if isinstance(result, Reject):
        assert result.reason in nf.REASONS
        assert result.word is None or (result.word.isprintable() and result.word.strip() == result.word)
        if expected_word is not None:
            assert result.word == expected_word
        return
    p = result.points
    assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 3 and len(p) >= 2
    assert np.isfinite(p).all() and p[-1, 2] == 1.0 and set(np.unique(p[:, 2])) <= {0.0, 1.0}
    assert result.word.isprintable() and result.word.strip() == result.word and result.word
    for text in (result.word, result.key_id, result.countrycode, result.timestamp):
        text.encode("utf-8")
    assert isinstance(result.recognized, bool)
    if expected_word is not None:
        assert result.word == expected_word


# --- Real drawings -------------------------------------------------------------

def test_ink_is_bit_identical_to_parse_line_on_every_real_drawing(real_lines):
    assert len(real_lines) == 8600
    for line in real_lines:
        expected, word = parse_line(line)
        drawing = check_line(line)
        assert isinstance(drawing, Drawing), line[:80]
        got = normalize(drawing.points)
        assert drawing.word == word
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes(), line[:80]


def test_real_lines_keep_their_metadata_and_pass_their_own_file(real_lines, real_sample):
    for line in real_lines[::97]:
        record = json.loads(line)
        d = check_line(line.encode("utf-8"), expected_word=record["word"])
        assert (d.word, d.key_id, d.countrycode, d.recognized, d.timestamp) == (
            record["word"], record["key_id"], record["countrycode"], record["recognized"],
            record["timestamp"])
    for path in real_sample.glob("*.ndjson"):
        assert file_class(str(path)) == path.name[:-len(".ndjson")]


def test_raw_format_floats_and_timing_are_read_like_parse_line(real_lines):
    for line in real_lines[::50]:
        d = json.loads(line)
        d["drawing"] = [[[x * 3.7 + 0.123 for x in s[0]], [y * 2.1 - 5.5 for y in s[1]],
                         list(range(len(s[0])))] for s in d["drawing"]]
        raw = json.dumps(d)
        expected, _ = parse_line(raw)
        assert normalize(check_line(raw).points).tobytes() == expected.tobytes()


def test_bom_and_windows_line_ending_are_tolerated(real_lines):
    line = real_lines[0]
    d = check_line(("\ufeff" + line + "\r\n").encode("utf-8"))
    assert normalize(d.points).tobytes() == parse_line(line)[0].tobytes()


def test_check_strokes_gives_the_points_of_check_line(real_lines):
    for line in real_lines[::200]:
        strokes = json.loads(line)["drawing"]
        assert check_strokes(strokes).tobytes() == check_line(line).points.tobytes()
    assert check_strokes([[1, 2]]) == Reject(nf.BAD_STROKE)
    assert check_strokes(None) == Reject(nf.MISSING_DRAWING)
    assert check_strokes([[[1, True], [1, 2]]]) == Reject(nf.NON_NUMERIC)
    assert check_strokes([[[1, 2], [3, 4]]] * 3, Limits(max_strokes=2)) == Reject(nf.TOO_MANY_STROKES)


# --- One test per kind of bad line ----------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("line, reason, word", [
    ("   ", nf.BLANK_LINE, None),
    (b'{"word": "cat", "drawing": [[[1, 2], [3, \xff]]]}', nf.INVALID_UTF8, None),
    ('{"word": "cat", "drawing": [[[1, 2], [3, 4]]', nf.INVALID_JSON, None),
    (DEEP, nf.INVALID_JSON, None),
    ('{"word": "cat", "x": %s, "drawing": [[[1, 2], [3, 4]]]}' % DEEP, nf.INVALID_JSON, None),
    ('{"word": "cat", "x": NaN, "y": %s}' % DEEP, nf.INVALID_JSON, None),
    ("[1, 2]", nf.NOT_AN_OBJECT, None),
    ('"cat"', nf.NOT_AN_OBJECT, None),
    ('{"drawing": [[[1, 2], [3, 4]]]}', nf.MISSING_WORD, None),
    (good_with(word=5), nf.MISSING_WORD, None),
    (good_with(word="  "), nf.MISSING_WORD, None),
    (good_with(word="ca\nt"), nf.BAD_WORD, None),
    (good_with(word="c\u0000at"), nf.BAD_WORD, None),
    (good_with(word="cat "), nf.BAD_WORD, None),
    (good_with(word=" cat"), nf.BAD_WORD, None),
    (good_with(word="c\tat"), nf.BAD_WORD, None),
    ('{"word": "\\ud800", "drawing": [[[1, 2], [3, 4]]]}', nf.BAD_WORD, None),
    ('{"word": "ca\\udffft", "drawing": [[[1, 2], [3, 4]]]}', nf.BAD_WORD, None),
    (good_with(key_id=1.5), nf.BAD_KEY_ID, "cat"),
    (good_with(key_id=["12"]), nf.BAD_KEY_ID, "cat"),
    (good_with(key_id=True), nf.BAD_KEY_ID, "cat"),
    ('{"word": "cat", "key_id": "\\ud800", "drawing": [[[1, 2], [3, 4]]]}', nf.BAD_KEY_ID, "cat"),
    (good_with(countrycode=7), nf.BAD_METADATA, "cat"),
    (good_with(timestamp={}), nf.BAD_METADATA, "cat"),
    (good_with(recognized="true"), nf.BAD_METADATA, "cat"),
    (good_with(recognized=1), nf.BAD_METADATA, "cat"),
    ('{"word": "cat", "countrycode": "\\udc00", "drawing": [[[1, 2], [3, 4]]]}', nf.BAD_METADATA, "cat"),
    ('{"word": "cat"}', nf.MISSING_DRAWING, "cat"),
    (good_with(drawing=None), nf.MISSING_DRAWING, "cat"),
    (good_with(drawing="strokes"), nf.BAD_DRAWING, "cat"),
    (good_with(drawing={"x": [1]}), nf.BAD_DRAWING, "cat"),
    (good_with(drawing=[]), nf.EMPTY_DRAWING, "cat"),
    (good_with(drawing=[[[1, 2]]]), nf.BAD_STROKE, "cat"),
    (good_with(drawing=[[1, 2]]), nf.BAD_STROKE, "cat"),
    (good_with(drawing=[[[1, 2], [3, 4], [5, 6], [7, 8]]]), nf.BAD_STROKE, "cat"),
    (good_with(drawing=[[[1, 2], 3]]), nf.BAD_STROKE, "cat"),
    (good_with(drawing=[[[], []]]), nf.EMPTY_STROKE, "cat"),
    (good_with(drawing=[[[1, 2, 3], [1, 2]]]), nf.XY_LENGTH_MISMATCH, "cat"),
    (good_with(drawing=[[[1], [2]]]), nf.SINGLE_POINT, "cat"),
    (good_with(drawing=[[[1, "2"], [1, 2]]]), nf.NON_NUMERIC, "cat"),
    (good_with(drawing=[[["12", 1], [1, 2]]]), nf.NON_NUMERIC, "cat"),
    (good_with(drawing=[[[1, True], [1, 2]]]), nf.NON_NUMERIC, "cat"),
    (good_with(drawing=[[[1, None], [1, 2]]]), nf.NON_NUMERIC, "cat"),
    (good_with(drawing=[[[1, {}], [1, 2]]]), nf.NON_NUMERIC, "cat"),
    (good_with(drawing=[[[[1], 1, 3], [2, 3, 4]]]), nf.NON_NUMERIC, "cat"),
    (good_with(drawing=[[[[1, 2], [3, 4]], [[1, 2], [3, 4]]]]), nf.NON_NUMERIC, "cat"),
    ('{"word": "cat", "drawing": [[[[1],1,3],[2,3,4]]]}', nf.NON_NUMERIC, "cat"),
    ('{"word": "cat", "drawing": [[[1, NaN], [1, 2]]]}', nf.NON_FINITE, "cat"),
    ('{"word": "cat", "drawing": [[[1, -Infinity], [1, 2]]]}', nf.NON_FINITE, "cat"),
    ('{"word": "cat", "drawing": [[[1, 1e999], [1, 2]]]}', nf.NON_FINITE, "cat"),
    ('{"word": "cat", "drawing": [[[1, 1e300], [1, 2]]]}', nf.NON_FINITE, "cat"),
    ('{"word": "cat", "drawing": [[[1, -1e39], [1, 2]]]}', nf.NON_FINITE, "cat"),
    ('{"word": "cat", "drawing": [[[1, %d], [1, 2]]]}' % 10 ** 400, nf.NON_FINITE, "cat"),
    ('{"word": "cat", "drawing": [[[1, %d], [1, NaN]]]}' % 10 ** 30, nf.NON_FINITE, "cat"),
])
def test_each_kind_of_bad_line_has_its_reason(line, reason, word):
    assert check_line(line) == Reject(reason, word)
    in_class_file = check_line(line, expected_word="cat")
    assert in_class_file.reason == reason and in_class_file.word == "cat"


def test_the_fast_path_is_not_fooled_by_a_later_drawing_key():
    # Only numbers after the last '"drawing"', but the top-level drawing holds a boolean.
    nested = '{"word": "cat", "drawing": [[[1, true], [1, 2]]], "x": {"drawing": [1]}}'
    escaped = '{"word": "cat", "drawing": [[[1, true], [1, 2]]], "a\\"drawing": [1]}'
    for line in (nested, escaped):
        assert check_line(line) == Reject(nf.NON_NUMERIC, "cat")


def test_float32_limits_are_exact():
    biggest = float(np.finfo(np.float32).max)
    assert isinstance(check_line(good_with(drawing=[[[0, biggest], [0, 1]]])), Drawing)
    assert check_line(good_with(drawing=[[[0, biggest * 1.0001], [0, 1]]])).reason == nf.NON_FINITE
    big_ints = check_line(good_with(drawing=[[[0, 2 ** 63], [-1, 1]]]))
    assert isinstance(big_ints, Drawing) and np.isfinite(big_ints.points).all()


BIGGEST = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("drawing, accepted", [
    ([[[-3e38, 3e38], [0, 1]]], False),                     # the range overflows float32
    ([[[0, 1], [-3e38, 3e38]]], False),                     # in y only
    ([[[0, 5, 7], [1, 2, 3]], [[-3e38], [3e38]]], False),   # across strokes
    ([[[-BIGGEST, BIGGEST], [0, 1]]], False),
    ([[[-2.0 ** 103, BIGGEST], [0, 1]]], False),            # max - min rounds to infinity
    ([[[-2.0 ** 102, BIGGEST], [0, 1]]], True),             # ... to the largest float32
    ([[[3e38, 3e38], [0, 1]]], True),                       # huge, but no extent
    ([[[1e-45, 0], [0, 1]]], False),                        # a subnormal coordinate
    ([[[2e-38, 3e-38], [0, 1]]], False),                    # a subnormal range
    ([[[0, 1e-30, 1e10], [0, 1, 2]]], False),               # a subnormal unit coordinate
    ([[[0, 1e-20, 1e10], [0, 1, 2]]], True),                # 30 orders of magnitude, fine
    ([[[1e-30, 2e-30], [1e-30, 3e-30]]], True),             # tiny, and normal
    ([[[0.5] * 4999 + [1e-42], [0.25] * 5000]], False),     # many points, one subnormal
    ([[[-2 ** 64, 2 ** 64], [0, 1]]], True),                # integers beyond int64
    ([[[-2 ** 63, 2 ** 63 - 1], [0, 1]]], True),
    ([[[0, 1, 2 ** 127], [0, 0, 0]]], False),                # 1 becomes 2**-127
])
def test_the_normalised_ink_must_stay_in_float32s_normal_numbers(drawing, accepted):
    result = check_line(good_with(drawing=drawing))
    if accepted:
        ink = normalize(result.points)
        tiny = np.finfo(np.float32).tiny
        assert np.isfinite(ink).all() and not ((ink != 0) & (abs(ink) < tiny)).any()
    else:
        assert result == Reject(nf.INK_OUT_OF_RANGE, "cat")
        assert check_strokes(drawing) == Reject(nf.INK_OUT_OF_RANGE)


def test_the_overflowing_line_found_in_an_attack_is_rejected():
    line = '{"word":"cat","drawing":[[[-3e38,3e38],[0,1]]]}'
    assert check_line(line) == Reject(nf.INK_OUT_OF_RANGE, "cat")
    with np.errstate(all="ignore"):
        assert not np.isfinite(parse_line(line)[0]).all()  # what the tutorial would write


def test_a_word_of_another_class_in_a_class_file_is_rejected():
    assert check_line(good_with(word="zebra"), expected_word="cat") == Reject(nf.WRONG_CLASS, "cat")
    assert check_line(good_with(word="Cat"), expected_word="cat") == Reject(nf.WRONG_CLASS, "cat")
    assert check_line(good_with(word="zebra")).word == "zebra"
    assert check_line(good_with(word="The Eiffel Tower"), expected_word="The Eiffel Tower").word \
        == "The Eiffel Tower"


def test_file_class_names_only_the_dataset_categories():
    assert len(CATEGORIES) == 345
    assert file_class("cat.ndjson") == "cat"
    assert file_class("gs://quickdraw_dataset/full/simplified/cat.ndjson.gz") == "cat"
    assert file_class("/data/The Eiffel Tower.ndjson") == "The Eiffel Tower"
    assert file_class("in/teddy-bear.jsonl") == "teddy-bear"
    assert file_class("zigzag.ndjson") == "zigzag"
    for other in ("mixed.ndjson", "drawings.ndjson", "Cat.ndjson", "broken.ndjson", "cat.txt",
                  "cat", "cats.ndjson", "cat.ndjson.bak", "The Eiffel Tower .ndjson"):
        assert file_class(other) is None, other


@pytest.mark.parametrize("key_id, kept", [
    ("5201136883597312", "5201136883597312"),
    ("00012", "00012"),
    ("abc-12", "abc-12"),
    ("", ""),
    ("99999999999999999999999", "99999999999999999999999"),
    ("\u00e9t\u00e9", "\u00e9t\u00e9"),
    (123, "123"),
    (-5, "-5"),
    (None, ""),
])
def test_key_id_is_kept_exactly_as_given(key_id, kept):
    assert check_line(good_with(key_id=key_id)).key_id == kept


def test_a_line_without_key_id_has_an_empty_one():
    assert check_line('{"word": "cat", "drawing": [[[1, 2], [3, 4]]]}').key_id == ""


def test_caps_on_bytes_strokes_and_points(real_lines):
    line = real_lines[0]
    d = check_line(line)
    n, strokes = len(d.points), int(d.points[:, 2].sum())
    assert check_line(line, Limits(max_points=n - 1)) == Reject(nf.TOO_MANY_POINTS, d.word)
    assert check_line(line, Limits(max_bytes=len(line) - 1)) == Reject(nf.TOO_MANY_BYTES)
    assert check_line(line, Limits(max_strokes=strokes - 1)) == Reject(nf.TOO_MANY_STROKES, d.word)
    fits = check_line(line, Limits(max_points=n, max_bytes=len(line), max_strokes=strokes))
    assert fits.word == "The Eiffel Tower"
    assert isinstance(check_line(line, Limits(0, 0, 0)), Drawing)


def huge_line(points: int) -> bytes:
    xs = b",".join([b"1"] * points)
    return b'{"word": "cat", "drawing": [[[' + xs + b"], [" + xs + b"]]]}"


def test_a_line_of_millions_of_points_is_refused_before_its_arrays_are_built():
    line = huge_line(6_500_000)
    start = time.perf_counter()
    assert check_line(line) == Reject(nf.TOO_MANY_BYTES)
    assert time.perf_counter() - start < 0.1
    tracemalloc.start()
    try:
        orjson.loads(line)
        _, parse_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert check_line(line, Limits(max_bytes=0)) == Reject(nf.TOO_MANY_POINTS, "cat")
        _, check_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Parsing is the whole cost: no copy of the coordinates, no array.
    assert check_peak < parse_peak * 1.1


def test_str_bytes_and_surrogate_escaped_text_are_all_accepted():
    assert check_line(GOOD).word == check_line(GOOD.encode()).word == "cat"
    assert check_line(bytearray(GOOD.encode())).word == "cat"
    assert check_line(b'{"word": "cat", "drawing": [[[1, 2], [3, \xff]]]}'.decode(
        "utf-8", "surrogateescape")) == Reject(nf.INVALID_UTF8)


def test_every_reason_is_documented():
    reasons = {v for k, v in vars(nf).items() if k.isupper() and isinstance(v, str)
               and v in nf.REASONS}
    assert reasons == set(nf.REASONS) and len(nf.REASONS) == 22
    assert all(text and "\n" not in text for text in nf.REASONS.values())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for reason, text in nf.REASONS.items():
        assert "| `%s` | %s |" % (reason, text) in readme, reason


# --- Generated hostile input ----------------------------------------------------

HOSTILE_TOKENS = ["1e300", "-1e300", "1e999", "NaN", "Infinity", "-Infinity", "true", "false",
                  "null", '"12"', "[1]", "[]", "{}", "-0", "1e-400", str(2 ** 64), str(10 ** 40),
                  "3.4028236e38", '"\\ud800"', '"\\u0000"', '"a\\nb"', "[" * 3000 + "]" * 3000,
                  '"\\udbff\\udfff"', "0.5", "-7"]
HOSTILE_WORDS = ["cat", "ca\nt", "cat ", "Cat", "c\u0000at", "\ud800", "zebra", "", " ", "\u2028",
                 "\u00e9", "\U0001f431", "cat\r", 5, None, ["cat"]]


def json_values():
    scalars = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=8) | st.sampled_from(HOSTILE_WORDS[:12]))
    return st.recursive(scalars, lambda c: st.lists(c, max_size=5)
                        | st.dictionaries(st.text(max_size=5), c, max_size=4), max_leaves=30)


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=True)


drawings_ish = st.lists(st.lists(st.lists(json_values(), max_size=6), max_size=4), max_size=4)
records = st.fixed_dictionaries(
    {"word": st.sampled_from(HOSTILE_WORDS) | json_values()},
    optional={"drawing": drawings_ish | json_values(), "key_id": json_values(),
              "countrycode": json_values(), "recognized": json_values(),
              "timestamp": json_values()})
limits = st.builds(Limits, st.integers(0, 50), st.integers(0, 3000), st.integers(0, 5))
expected = st.none() | st.sampled_from(["cat", "The Eiffel Tower"])
HEALTH = settings(max_examples=300, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HEALTH
@given(st.binary(max_size=3000), limits, expected)
def test_random_bytes_never_raise(line, lim, word):
    assert_sound(check_line(line, lim, word), word)


@HEALTH
@given(json_values(), limits, expected)
def test_random_json_never_raises(value, lim, word):
    assert_sound(check_line(dumps(value), lim, word), word)
    assert_sound(check_line(json.dumps(value, ensure_ascii=False), lim, word), word)


@settings(HEALTH, max_examples=150)
@given(records, limits, expected)
def test_random_records_never_raise(record, lim, word):
    assert_sound(check_line(dumps(record), lim, word), word)
    result = check_strokes(record.get("drawing"), lim)
    assert isinstance(result, (np.ndarray, Reject))
    if isinstance(result, Reject):
        assert result.reason in nf.REASONS and result.word is None
    else:
        assert result.dtype == np.float32 and np.isfinite(result).all()


@pytest.fixture(scope="module")
def some_real_lines(real_lines) -> list[str]:
    return real_lines[::43]


@HEALTH
@given(data=st.data())
def test_mutated_real_lines_never_raise(some_real_lines, data):
    line = data.draw(st.sampled_from(some_real_lines)).encode("utf-8")
    mutation = data.draw(st.sampled_from(["cut", "insert", "token", "flip"]))
    at = data.draw(st.integers(0, len(line)))
    if mutation == "cut":
        line = line[:at] + line[data.draw(st.integers(at, len(line))):]
    elif mutation == "insert":
        line = line[:at] + data.draw(st.binary(min_size=1, max_size=20)) + line[at:]
    elif mutation == "flip":
        line = line[:at] + bytes([data.draw(st.integers(0, 255))]) + line[at + 1:]
    else:
        numbers = [i for i in range(len(line)) if line[i:i + 1].isdigit()
                   and not line[i - 1:i].isdigit()]
        start = data.draw(st.sampled_from(numbers))
        end = start
        while line[end:end + 1].isdigit():
            end += 1
        token = data.draw(st.sampled_from(HOSTILE_TOKENS)).encode()
        line = line[:start] + token + line[end:]
    word = data.draw(expected)
    assert_sound(check_line(line, Limits(), word), word)
    assert_sound(check_line(line, Limits(0, 0, 0), None))


@HEALTH
@given(st.integers(1, 200_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]))
def test_deep_nesting_never_raises(depth, opener):
    closer = {"[": "]", "{\"a\":": "}", "[{\"b\":": "}]"}[opener]
    body = opener * depth + "1" + closer * depth
    for line in (body, '{"word": "cat", "x": %s, "drawing": [[[1, 2], [3, 4]]]}' % body,
                 '{"word": "cat", "x": NaN, "y": %s}' % body):
        assert_sound(check_line(line, Limits(max_bytes=0)))
