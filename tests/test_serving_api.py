"""The serving API's request checks and batching, without TensorFlow."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

import ndjson_format
from serving.app import BadRequest, Settings, parse_instances, prediction
from serving.batcher import Batcher, Overloaded

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


@pytest.mark.parametrize("payload, reason", [
    (b"{", "invalid_json"),
    ([SQUARE], "missing_instances"),
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
