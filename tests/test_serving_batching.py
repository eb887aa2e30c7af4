"""Batching for latency: calls cut by length, shortest first, no wait when
nothing can join, and a request served alone gets exactly the export's answer."""
from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from serving.batcher import Batcher, plan_calls


def recording_model(calls: list):
    def model(drawings):
        calls.append([len(d) for d in drawings])
        return np.stack([np.full(3, len(d), np.float32) for d in drawings])
    return model


def points(n: int) -> np.ndarray:
    return np.zeros((n, 3), np.float32)


def test_plan_keeps_similar_lengths_together_and_puts_a_long_drawing_apart():
    assert plan_calls([40, 35, 38, 30], [1, 1, 1, 1]) == [[3, 1, 2, 0]]
    assert plan_calls([30, 400, 35, 40], [1, 1, 1, 1]) == [[0, 2, 3], [1]]
    # padding many drawings is dear: a request of 32 short ones is not padded to a longer one
    assert plan_calls([50, 20], [1, 32]) == [[1], [0]]
    assert plan_calls([50, 20], [32, 1]) == [[1, 0]]
    calls = plan_calls(list(range(64, 0, -1)), [1] * 64)
    assert sorted(i for call in calls for i in call) == list(range(64))
    assert [max(64 - i for i in call) for call in calls] == \
        sorted(max(64 - i for i in call) for call in calls)


def test_short_drawings_are_answered_before_a_long_one_that_came_with_them():
    calls = []

    async def scenario():
        batcher = Batcher(recording_model(calls), max_batch=8, max_wait_s=0.05)
        await batcher.start()
        with batcher.reading():  # the model waits for requests still being read
            first = asyncio.ensure_future(batcher.submit([points(500)]))
            await asyncio.sleep(0.01)
            rest = [asyncio.ensure_future(batcher.submit([points(n)])) for n in (20, 25)]
        answers = await asyncio.gather(first, *rest)
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert [a[0][0] for a in answers] == [500, 20, 25]
    assert calls == [[20, 25], [500]]


def test_a_request_keeps_its_drawings_in_one_call():
    calls = []

    async def scenario():
        batcher = Batcher(recording_model(calls), max_batch=4)
        await batcher.start()
        answer = await batcher.submit([points(n) for n in (5, 300, 6, 7, 8, 900)])
        await batcher.stop()
        return answer

    assert asyncio.run(scenario())[:, 0].tolist() == [5, 300, 6, 7, 8, 900]
    assert calls == [[5, 300, 6, 7], [8, 900]]  # max_batch drawings per call, in order


def test_an_idle_model_does_not_wait_when_no_request_is_being_read():
    calls = []

    async def scenario():
        batcher = Batcher(recording_model(calls), max_wait_s=2.0)
        await batcher.start()
        start = time.monotonic()
        await batcher.submit([points(10)])
        elapsed = time.monotonic() - start
        await batcher.stop()
        return elapsed

    assert asyncio.run(scenario()) < 1.0  # the 2 s wait was not taken
    assert calls == [[10]]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_answers_are_the_exported_signature_on_each_request(tmp_path, real_lines):
    """Requests sent one at a time, through the app, against the signature run on
    each request's drawings padded to its longest (as TF Serving runs a request)."""
    import tensorflow as tf
    from starlette.testclient import TestClient

    from serving.app import Settings, create_app, parse_instances, prediction
    from serving.model import ServedModel
    from serving_helpers import CLASSES, tiny_export

    export, _ = tiny_export(tmp_path / "export")
    served = ServedModel(str(export))
    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    settings = Settings(top_k=4)
    ids = {c: i for i, c in enumerate(CLASSES)}
    drawings = [json.loads(line)["drawing"] for line in real_lines[::211]]
    by_size = sorted(drawings, key=lambda d: sum(len(s[0]) for s in d))
    requests = [[d] for d in drawings] + [by_size[:3] + by_size[-1:] + by_size[3:6]]
    async def through_batcher(points):
        batcher = Batcher(served.probabilities)
        await batcher.start()
        answer = await batcher.submit(points)
        await batcher.stop()
        return answer

    longest = 0
    with TestClient(create_app(served, settings)) as client:
        for instances in requests:
            body = json.dumps({"instances": instances}).encode()
            points, _ = parse_instances(body, settings, set(CLASSES))
            lengths = [len(p) for p in points]
            batch = np.zeros((3, len(points), max(lengths)), np.float32)
            for i, p in enumerate(points):
                batch[:, i, :len(p)] = p.T
            expected = signature(x=tf.constant(batch[0]), y=tf.constant(batch[1]),
                                 stroke_end=tf.constant(batch[2]),
                                 lengths=tf.constant(lengths, tf.int32))["probabilities"].numpy()
            longest = max(longest, *lengths)
            assert np.array_equal(asyncio.run(through_batcher(points)), expected)
            response = client.post("/v1/models/quickdraw:predict", content=body)
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": [
                prediction(p, CLASSES, ids, None, settings) for p in expected]}
    assert len(requests) > 30 and longest > 100  # short and long drawings, one request of both


def test_after_a_batch_of_several_requests_the_idle_model_waits_for_the_next_ones():
    calls = []

    async def scenario():
        batcher = Batcher(recording_model(calls), max_wait_s=0.5)
        await batcher.start()
        await asyncio.gather(batcher.submit([points(3)]), batcher.submit([points(4)]))
        first = asyncio.ensure_future(batcher.submit([points(5)]))
        await asyncio.sleep(0.05)  # no request is being read: only the last batch says wait
        await asyncio.gather(first, batcher.submit([points(6)]))
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [[3, 4], [5, 6]]
