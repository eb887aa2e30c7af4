"""The serving API's request checks and batching, without TensorFlow."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

import ndjson_format
from serving.app import prediction
from serving.batcher import Batcher, Overloaded
from serving.requests import BadRequest, parse_instances
from serving.settings import Settings

CLASSES = ["cat", "dog", "fish"]
SQUARE = [[[0, 10, 10, 0, 0], [0, 0, 10, 10, 0]]]


def parse(payload, **settings):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_instances(body, Settings(**settings), set(CLASSES))


def test_instances_in_both_ndjson_forms():
    drawings, targets = parse({"instances": [SQUARE, {"drawing": SQUARE, "target": "dog"}]})
    assert targets == [None, "dog"]
    for points in drawings:
        np.testing.assert_array_equal(points[:, 2], [0, 0, 0, 0, 1])
        np.testing.assert_array_equal(points[:, 0], [0, 10, 10, 0, 0])


def test_a_body_is_read_as_the_pipeline_reads_a_line():
    body = json.dumps({"instances": [SQUARE]}).encode()
    drawings, _ = parse(b"\xef\xbb\xbf" + body + b"\r\n")  # byte-order mark, CRLF
    np.testing.assert_array_equal(drawings[0], parse(body)[0][0])


def test_signature_rows_are_the_drawings_they_pad():
    from deploy.serving_request import instances
    lines = [json.dumps({"word": "cat", "drawing": d}) for d in (SQUARE, SQUARE * 2)]
    points = [ndjson_format.check_line(line).points for line in lines]
    rows = instances(points)
    assert len(rows[0]["x"]) == 10 and rows[0]["lengths"] == 5  # padded to the longest
    drawings, targets = parse({"instances": rows})
    assert targets == [None, None]
    for got, want in zip(drawings, points):
        np.testing.assert_array_equal(got, want)
    # stroke_end is kept as given: an open last stroke stays open, as TF Serving feeds it
    open_end = dict(rows[0], stroke_end=[0, 0, 0, 0, 0] + [0] * 5)
    np.testing.assert_array_equal(parse({"instances": [open_end]})[0][0][:, 2], [0] * 5)


ROW = {"x": [0, 10, 10, 0], "y": [0, 0, 10, 10], "stroke_end": [0, 1, 0, 1], "lengths": 4}


@pytest.mark.parametrize("payload, reason", [
    (b"{", "invalid_json"),
    (b"", "blank_line"),
    (b"\xff{}", "invalid_utf8"),
    ([SQUARE], "not_an_object"),
    ({"inputs": {}}, "missing_instances"),
    ({"instances": {"0": SQUARE}}, "bad_instances"),
    ({"instances": [SQUARE], "signature_name": ["serving_default"]}, "bad_signature"),
    ({"instances": [SQUARE], "signature_name": "predict_ink"}, "unknown_signature"),
    ({"instances": [{"drawing": SQUARE, "target": ["cat"]}]}, "bad_target"),
    ({"instances": [{"drawing": SQUARE, "target": {"word": "cat"}}]}, "bad_target"),
    (b'{"instances": [[[[NaN, 1], [2, 3]]]]}', "non_finite_coordinate"),
    (b'{"instances": [[[[-Infinity, 1], [2, 3]]]]}', "non_finite_coordinate"),
    (b'{"instances": [[[[1e999, 1], [2, 3]]]]}', "non_finite_coordinate"),
    (b'{"instances": [[[[' + b"9" * 400 + b', 1], [2, 3]]]]}', "non_finite_coordinate"),
    (b'{"instances": [[[["1", 1], [2, 3]]]]}', "non_numeric_coordinate"),
    ({"instances": [7]}, "bad_drawing"),
    ({"instances": [dict(ROW, lengths=True)]}, "bad_instance"),
    ({"instances": [dict(ROW, lengths=5)]}, "bad_instance"),
    ({"instances": [dict(ROW, stroke_end=[0, 2, 0, 1])]}, "bad_instance"),
    ({"instances": [dict(ROW, stroke_end=[0, 1, 0])]}, "bad_instance"),
    ({"instances": [dict(ROW, x="0 10 10 0")]}, "bad_instance"),
    ({"instances": [dict(ROW, word="cat")]}, "bad_instance"),
    ({"instances": [{"x": ROW["x"]}]}, "bad_instance"),
    ({"instances": [dict(ROW, y=[0, 0, 10])]}, "xy_length_mismatch"),
    ({"instances": [dict(ROW, x=[0, "10", 10, 0])]}, "non_numeric_coordinate"),
    ({"instances": [dict(ROW, lengths=1)]}, "single_point"),
    ({"instances": [dict(ROW, lengths=0)]}, "empty_drawing"),
    # the padding past lengths is fed to the model too, as TF Serving feeds it
    ({"instances": [dict(ROW, lengths=3, y=[0, 0, 10, "a"])]}, "bad_instance"),
    ({"instances": [dict(ROW, lengths=3, stroke_end=[0, 1, 0, {}])]}, "bad_instance"),
    ({"instances": [dict(ROW, lengths=3, x=[0, 10, 10, True])]}, "bad_instance"),
    (b'{"instances": [{"x": [0, 1, NaN], "y": [0, 1, 2], "stroke_end": [0, 1, 0], "lengths": 2}]}',
     "non_finite_coordinate"),
    ({"instances": [dict(ROW, x=list(range(11)), y=list(range(11)), stroke_end=[1] * 11,
                         lengths=11)]}, "too_many_points"),
    ({"instances": [SQUARE] * 3}, "instance_count"),
    ({"instances": [{"drawing": SQUARE, "target": "zebra"}]}, "unknown_target"),
    ({"instances": [{"target": "cat"}]}, "missing_drawing"),
    ({"instances": [[[list(range(11)), list(range(11))]]]}, "too_many_points"),
    ({"instances": [SQUARE * 3]}, "too_many_strokes"),
])
def test_bad_instances_are_refused_with_their_reason(payload, reason):
    limits = ndjson_format.Limits(max_points=10, max_strokes=2)
    with pytest.raises(BadRequest) as e:
        parse(payload, max_instances=2, limits=limits)
    assert e.value.status == 400 and e.value.reason == reason
    assert "\n" not in str(e.value)


def test_prediction_ranks_and_applies_the_game_rule():
    p = np.array([0.2, 0.7, 0.1], np.float32)
    settings = Settings(top_k=2, threshold=0.5)
    ids = {c: i for i, c in enumerate(CLASSES)}
    assert prediction(p, CLASSES, ids, None, settings) == {
        "classes": ["dog", "cat"], "scores": [pytest.approx(0.7), pytest.approx(0.2)]}
    assert prediction(p, CLASSES, ids, "dog", settings)["accepted"] is True
    assert prediction(p, CLASSES, ids, "cat", settings)["accepted"] is False


def test_concurrent_requests_share_model_calls_and_the_queue_is_bounded():
    calls = []

    def model(drawings):
        calls.append(len(drawings))
        return np.stack([np.full(3, len(d), np.float32) for d in drawings])

    async def scenario():
        batcher = Batcher(model, max_batch=8, max_wait_s=0.01, max_queue=40)
        await batcher.start()
        drawings = [np.zeros((n, 3), np.float32) for n in range(2, 22)]
        answers = await asyncio.gather(*(batcher.submit([d]) for d in drawings))
        with pytest.raises(Overloaded):
            await batcher.submit([drawings[0]] * 41)
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert [a[0][0] for a in answers] == list(range(2, 22))  # each request its own answer
    assert sum(calls) == 20 and max(calls) <= 8 and len(calls) <= 4


class PointCountModel:
    """Probabilities from each drawing's point count; fails on 3-point drawings."""
    classes = CLASSES
    version = 1
    preprocessing = "test"
    signature_defs: dict = {}

    def probabilities(self, drawings):
        if any(len(d) == 3 for d in drawings):
            raise RuntimeError("cannot do three points\nsecond line")
        return np.stack([np.eye(3, dtype=np.float32)[len(d) % 3] for d in drawings])


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_model_failure_is_a_500_and_the_next_request_is_served():
    from starlette.testclient import TestClient

    from serving.app import create_app
    with TestClient(create_app(PointCountModel(), Settings(top_k=2))) as client:
        url = "/v1/models/quickdraw:predict"
        answer = client.post(url, json={"instances": [[[[0, 1, 2], [0, 1, 2]]]]})
        assert answer.status_code == 500
        assert answer.json() == {"error": "the model failed: cannot do three points",
                                 "reason": "model_error"}
        answer = client.post(url, json={"instances": [SQUARE, {"drawing": SQUARE[0:1] * 2,
                                                               "target": "fish"}]})
        assert answer.status_code == 200
        assert answer.json()["predictions"] == [
            {"classes": ["fish", "cat"], "scores": [1.0, 0.0]},
            {"classes": ["dog", "cat"], "scores": [1.0, 0.0], "target": "fish",
             "target_score": 0.0, "accepted": False}]
        assert client.get("/v1/models/other").status_code == 404
        assert client.post(url, content=b"x" * 2_000_000).json()["reason"] == "too_many_bytes"


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_every_refusal_is_json_with_a_reason():
    from starlette.testclient import TestClient

    from serving.app import create_app

    class BrokenMetadata(PointCountModel):
        signature_defs = {"serving_default": object()}  # not JSON: a bug in the server

    with TestClient(create_app(BrokenMetadata(), Settings()), raise_server_exceptions=False) \
            as client:
        for method, path, status, reason in [
                ("GET", "/v1/models/quickdraw:predict", 405, "method_not_allowed"),
                ("GET", "/v1/models/quickdraw/versions/1:predict", 405, "method_not_allowed"),
                ("POST", "/healthz", 405, "method_not_allowed"),
                ("POST", "/v1/models/quickdraw:classify", 404, "not_found"),
                ("GET", "/v1/models/quickdraw:classify", 404, "not_found"),
                ("GET", "/nowhere", 404, "not_found"),
                ("GET", "/static/nowhere.js", 404, "not_found"),
                ("GET", "/v1/models/other", 404, "unknown_model"),
                ("GET", "/v1/models/quickdraw/metadata", 500, "internal_error")]:
            answer = client.request(method, path)
            assert answer.status_code == status, (method, path, answer.text)
            assert answer.headers["content-type"] == "application/json"
            assert answer.json()["reason"] == reason and answer.json()["error"]
            if status == 405:
                assert set(answer.headers["allow"].split(", ")) == (
                    {"POST"} if ":predict" in path else {"GET", "HEAD"})
        assert client.get("/healthz").json()["refused_connections"] == {}
        answer = client.post("/v1/models/quickdraw:predict", content=b"x" * 2_000_000)
        assert answer.status_code == 413 and answer.headers["connection"] == "close"


def test_connection_limits_are_checked_and_their_defaults_documented():
    import re

    from sample_paths import REPO
    from serving.connection_guard import ConnectionLimits, limits_from
    from serving.server import build_parser
    args = build_parser().parse_args(["--model=x"])
    assert limits_from(args) == ConnectionLimits()
    documented = re.findall(r"^\| `--(\w+)` \| ([\d.]+)(?: s)? \|", (
        REPO / "docs" / "serving.md").read_text(), re.M)
    assert len(documented) == 5
    for flag, default in documented:
        assert float(getattr(args, flag)) == float(default), flag
    for flag in ("--header_timeout=0", "--body_timeout=nan", "--max_headers=-1",
                 "--max_header_bytes=0", "--max_connections=0"):
        with pytest.raises(ValueError, match=flag.split("=")[0]):
            limits_from(build_parser().parse_args(["--model=x", flag]))
