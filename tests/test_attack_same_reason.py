"""Every reader of drawings gives the same answer for the same line: the
pipeline's read step, ``quickdraw-render``, ``quickdraw-predict`` and the
server. Hostile lines are generated token by token (numbers at float32's and
float64's edges, integers past 64 bits and past Python's 4,300 digits,
booleans, NaN, raw-format timing arrays, single points) and each is fed
through each reader's own entry point; the metadata is valid, so the readers
that do not check it (predict, the server) must agree too."""
from __future__ import annotations

import collections
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndjson_format import Limits
from serving_helpers import PointCountModel

LIMITS = Limits(max_points=50, max_bytes=10_000_000, max_strokes=6)

NUMBERS = ["0", "1", "-1", "255", "1.5", "-0.0", "0.0", "3.4028234663852886e38",
           "-3.4028234663852886e38", "3.4028235677973366e38", "1e38", "1e308", "-1e308",
           "1e999", "1e-40", "-1e-40", "2e-308", "5e-324", "1e-300", "9223372036854775807",
           "9223372036854775808", "-9223372036854775809", "18446744073709551616",
           "1" + "0" * 400, "-" + "9" * 400, "9" * 5000, "0." + "1" * 500]
NOT_NUMBERS = ["true", "false", "null", "NaN", "Infinity", "-Infinity", '"12"', "[1]", "{}",
               "[]"]


def tokens(hostile: bool):
    numbers = st.one_of(st.integers(-300, 300).map(str), st.sampled_from(NUMBERS))
    return st.one_of(numbers, st.sampled_from(NOT_NUMBERS)) if hostile else numbers


def array(elements, min_size=0, max_size=8):
    return st.lists(elements, min_size=min_size, max_size=max_size).map(
        lambda xs: "[" + ", ".join(xs) + "]")


@st.composite
def strokes(draw) -> str:
    """A stroke, most often well formed, with hostile numbers in one in three."""
    numbers = tokens(draw(st.integers(0, 2)) == 0)
    n = draw(st.integers(1, 6) if draw(st.integers(0, 9)) else st.integers(0, 1))
    xs = draw(st.lists(numbers, min_size=n, max_size=n))
    m = n if draw(st.integers(0, 9)) else draw(st.integers(0, 7))
    ys = draw(st.lists(numbers, min_size=m, max_size=m))
    parts = ["[" + ", ".join(xs) + "]", "[" + ", ".join(ys) + "]"]
    if draw(st.booleans()):  # the raw format's timing array, never read
        parts.append(draw(array(st.sampled_from(NUMBERS + NOT_NUMBERS))))
    if draw(st.integers(0, 19)) == 0:
        parts = parts[:draw(st.integers(0, 4))] + ["0"] * draw(st.integers(0, 1))
    return "[" + ", ".join(parts) + "]"


@st.composite
def lines(draw) -> bytes:
    count = draw(st.integers(1, 3) if draw(st.integers(0, 9)) else st.integers(0, 8))
    drawing = "[" + ", ".join(draw(st.lists(strokes(), min_size=count, max_size=count))) + "]"
    if draw(st.integers(0, 19)) == 0:
        drawing = draw(st.sampled_from(NUMBERS + NOT_NUMBERS + ['"x"']))
    head = '{"word": "cat", "key_id": "5", "recognized": true, '
    if draw(st.booleans()):  # drawing last, as in the dataset (check_line's fast path)
        return (head + '"drawing": ' + drawing + "}").encode()
    return (head + '"drawing": ' + drawing + ', "countrycode": "US"}').encode()


def pipeline_reason(path: Path, work: Path) -> str:
    from pipeline import stats as stats_lib
    from pipeline.sources import Range
    from pipeline.reading import COUNTS, _ReadUnit
    read = _ReadUnit(str(work), seed=1, wanted=5, max_points=LIMITS.max_points,
                     max_bytes=LIMITS.max_bytes, recognized_only=False, classes=None)
    read.setup()
    read._limits = LIMITS  # the pipeline has no --max_strokes; the other readers share it
    counts = next(o.value for o in read.process((0, [Range(0, str(path), 0, None)]))
                  if getattr(o, "tag", None) == COUNTS)
    reasons = [k[1][len(stats_lib.REJECTED):] for k in counts
               if k[1].startswith(stats_lib.REJECTED)]
    assert len(reasons) + sum(1 for k in counts if k[1] == stats_lib.VALID) == 1, counts
    return reasons[0] if reasons else "ok"


def render_reason(path: Path) -> str:
    from pipeline.drawing_readers import read_ndjson
    rejects = collections.Counter()
    drawings = list(read_ndjson(path, rejects, False, LIMITS))
    assert len(drawings) + sum(rejects.values()) == 1, (drawings, rejects)
    return next(iter(rejects)) if rejects else "ok"


class _Predictor:
    classes = PointCountModel.classes

    def probabilities(self, drawings):
        return PointCountModel().probabilities([d[0] for d in drawings])


def predict_reason(path: Path) -> str:
    import json

    from trainer.predict import predict_lines, read_lines
    out = io.StringIO()
    predict_lines(_Predictor(), read_lines(str(path), LIMITS.max_bytes), out=out,
                  err=io.StringIO(), limits=LIMITS)
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    return record.get("error", "ok")


def server_reason(client, line: bytes) -> str:
    """The line as the one instance of a request (an object with a ``drawing``)."""
    answer = client.post("/v1/models/quickdraw:predict",
                         content=b'{"instances": [' + line + b"]}")
    assert answer.headers["content-type"] == "application/json", answer.text
    return "ok" if answer.status_code == 200 else answer.json()["reason"]


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    from starlette.testclient import TestClient

    from serving.app import Settings, create_app
    folder = tmp_path_factory.mktemp("readers")
    app = create_app(PointCountModel(), Settings(limits=LIMITS, max_body_bytes=LIMITS.max_bytes))
    with TestClient(app) as client:
        def reasons(line: bytes) -> dict[str, str]:
            path = folder / "cat.ndjson"
            path.write_bytes(line + b"\n")
            work = folder / "work"
            work.mkdir(exist_ok=True)
            return {"pipeline": pipeline_reason(path, work), "render": render_reason(path),
                    "predict": predict_reason(path), "server": server_reason(client, line)}
        yield reasons


def assert_same(reasons: dict[str, str], line: bytes) -> None:
    assert len(set(reasons.values())) == 1, (reasons, line[:300])


EXPLICIT = [
    b'{"word": "cat", "drawing": [[[0, ' + b"9" * 5000 + b'], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[0, 3.4028234663852886e38], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[-3.4028234663852886e38, 3.4028234663852886e38], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[0, 1e-40], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[0, 5e-324], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[-0.0, 0.0], [0, -0.0]]]}',
    b'{"word": "cat", "drawing": [[[0, 18446744073709551616], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[0, true], [0, 1]]]}',
    b'{"word": "cat", "drawing": [[[0], [0]]]}',
    b'{"word": "cat", "drawing": [[[0, 10, 0], [0, 10, 0]]]}',
    b'{"word": "cat", "drawing": [[[0, 1], [0, 1], [0, 1e999]]]}',
    b'{"word": "cat", "drawing": [[[0, 1], [0, 1], ["t", NaN]]]}',
]


@pytest.mark.slow
@pytest.mark.parametrize("line", EXPLICIT)
def test_boundary_lines_get_one_answer_from_every_reader(readers, line):
    assert_same(readers(line), line)


def test_a_5000_digit_integer_is_a_number_that_overflows_not_invalid_json(readers):
    """Python refuses to convert integers of more than 4,300 digits; such a
    coordinate overflows like a 400-digit one, and such a key_id is too long."""
    assert set(readers(EXPLICIT[0]).values()) == {"non_finite_coordinate"}
    from ndjson_format import check_line
    key_id = b'{"word": "cat", "drawing": [[[0, 1], [0, 1]]], "key_id": %s}'
    assert check_line(key_id % (b"9" * 5000)).reason == "bad_key_id"
    assert check_line(key_id % (b"-" + b"9" * 5000)).reason == "bad_key_id"


@pytest.mark.slow
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(line=lines())
def test_generated_hostile_lines_get_one_answer_from_every_reader(readers, line):
    assert_same(readers(line), line)


def nested_line(depth: int) -> bytes:
    """A drawing with a NaN coordinate (only Python's lenient reader takes
    it) and an extra field nested ``depth`` levels in all."""
    return (b'{"word": "cat", "countrycode": "US", "timestamp": "2017-03-01 00:00:00.1", '
            b'"recognized": true, "key_id": "1", "drawing": [[[0, NaN], [0, 1]]], "extra": '
            + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}")


def reason_from_deep_stack(line: bytes, frames: int) -> str:
    from ndjson_format import check_line
    if frames:
        return reason_from_deep_stack(line, frames - 1)
    return getattr(check_line(line), "reason", "valid")


@pytest.mark.parametrize("value, reason", [("NaN", "non_finite_coordinate"), ("1e999", "non_finite_coordinate"),
                                           ('"\\ud800"', "non_numeric_coordinate")])
def test_every_construct_only_python_reads_is_read_to_512_levels_and_no_deeper(value, reason):
    for depth, expected in ((512, reason), (513, "invalid_json")):
        line = nested_line(depth).replace(b"NaN", value.encode())
        assert reason_from_deep_stack(line, 0) == expected, (value, depth)


@pytest.mark.parametrize("depth", [2, 100, 512, 513, 900, 1024, 1025])
def test_a_deep_line_gets_one_reason_however_deep_the_readers_stack(depth):
    """A reader deep in Beam's or a server's stack gives the reason that one
    near the top of its stack gives: the lenient reader takes 512 levels
    whatever the caller's depth, where Python's recursion limit would make
    the answer depend on it."""
    line = nested_line(depth)
    expected = "non_finite_coordinate" if depth <= 512 else "invalid_json"
    assert reason_from_deep_stack(line, 0) == expected
    assert reason_from_deep_stack(line, 400) == expected


def json_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    return 0


TRICKY_TEXT = st.text(st.sampled_from('[]{}"\\ a\u00e9\n'), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.one_of(st.integers(), st.floats(allow_nan=True), TRICKY_TEXT, st.none()),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(TRICKY_TEXT, inner, max_size=4)),
                    max_leaves=30),
       st.booleans())
def test_the_nesting_the_lenient_reader_is_given_is_the_lines_own(value, ascii_only):
    import json

    from lenient_json import nesting
    line = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert nesting(line) == json_depth(value)


def test_a_line_of_escaped_quotes_is_judged_in_one_pass():
    """The nesting is counted in one pass: finding strings by a regular
    expression retried at every quote grew with the square of the length
    (3 s for 32 KB of escaped quotes; this line is 1 MB)."""
    import time

    from ndjson_format import check_line
    line = b'{"word": "cat", "drawing": [[[0, NaN], [0, 1]]], "b": "' + b'\\"' * 500_000
    start = time.perf_counter()
    assert check_line(line, Limits(max_bytes=2_000_000)).reason == "invalid_json"
    assert time.perf_counter() - start < 10
