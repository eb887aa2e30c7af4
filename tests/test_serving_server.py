"""quickdraw-serve in a real process: TF Serving's REST API, batching, the page,
held-out examples, and bad input that gets a 4xx while the server stays up."""
from __future__ import annotations

import concurrent.futures
import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

import ndjson_format
from serving_helpers import dataset_classes, expected_probabilities

pytestmark = pytest.mark.slow


def call(server, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(server.url + path, data=body, headers=headers or {},
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def predict(server, payload: object) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return call(server, "/v1/models/quickdraw:predict", body,
                {"Content-Type": "application/json"})


def test_predictions_are_the_model_on_parse_line(server, serving_export, serving_dataset,
                                                 real_lines):
    _, model = serving_export
    classes = dataset_classes(serving_dataset)
    lines = real_lines[5::157]
    status, answer = predict(server, {"instances": [json.loads(l)["drawing"] for l in lines]})
    assert status == 200, answer
    expected = expected_probabilities(model, lines)
    for prediction, p in zip(answer["predictions"], expected):
        order = np.argsort(-p, kind="stable")[:3]
        assert prediction["classes"] == [classes[i] for i in order]
        np.testing.assert_allclose(prediction["scores"], p[order], atol=1e-5)
    # an ndjson record with a target gets the game's verdict (threshold 0.3)
    record = json.loads(lines[0])
    status, answer = predict(server, {"instances": [{"drawing": record["drawing"],
                                                     "target": classes[1]}]})
    score = float(expected[0][1])
    assert answer["predictions"][0]["target"] == classes[1]
    assert answer["predictions"][0]["target_score"] == pytest.approx(score, abs=1e-5)
    assert answer["predictions"][0]["accepted"] == (score > 0.3)


def test_metadata_status_and_health(server, serving_dataset):
    status, meta = call(server, "/v1/models/quickdraw/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "quickdraw", "signature_name": "", "version": "7"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {k: v["dtype"] for k, v in signature["inputs"].items()} == {
        "x": "DT_FLOAT", "y": "DT_FLOAT", "stroke_end": "DT_FLOAT", "lengths": "DT_INT32"}
    assert meta["quickdraw"]["classes"] == dataset_classes(serving_dataset)
    assert meta["quickdraw"]["preprocessing"] == "tf.Transform"
    assert call(server, "/v1/models/quickdraw")[1]["model_version_status"][0]["state"] == \
        "AVAILABLE"
    assert call(server, "/v1/models/quickdraw/versions/7")[0] == 200
    status, answer = call(server, "/v1/models/other/metadata")
    assert status == 404 and answer["reason"] == "unknown_model"
    assert call(server, "/healthz")[1]["status"] == "ok"


def test_concurrent_requests_are_batched(server, real_lines):
    before = call(server, "/healthz")[1]
    drawings = [json.loads(l)["drawing"] for l in real_lines[:48]]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda d: predict(server, {"instances": [d]}), drawings))
    assert all(status == 200 for status, _ in answers)
    after = call(server, "/healthz")[1]
    assert after["drawings"] - before["drawings"] == 48
    assert after["batches"] - before["batches"] < 48


def test_held_out_examples_and_the_page(server, serving_dataset):
    status, example = call(server, "/examples/cat")
    assert status == 200 and example["word"] == "cat"
    assert 0 <= min(min(s[0] + s[1]) for s in example["drawing"])
    assert max(max(s[0] + s[1]) for s in example["drawing"]) == 255
    assert predict(server, {"instances": [example["drawing"]]})[0] == 200
    status, answer = call(server, "/examples/zebra")
    assert status == 404 and answer["reason"] == "no_example"
    status, page = call(server, "/")
    assert status == 200 and "<canvas" in page and "/static/draw.js" in page
    assert "pointerdown" in call(server, "/static/draw.js")[1]


def raw_post(server, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Sends bytes as they are, reading the answer while sending (a server may answer
    and close before a large body is sent); the status code and JSON of the answer."""
    import threading
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        def send():
            try:
                s.sendall(head + body)
            except OSError:  # the server answered and closed first
                pass
        sender = threading.Thread(target=send)
        sender.start()
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
                reply.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:  # the server closed it first (an answer that ends the connection)
            pass
        sender.join()
    headers, text = reply.split(b"\r\n\r\n", 1)
    return int(headers.split(b" ", 2)[1]), json.loads(text)


def post_head(length: int | None = None, chunked: bool = False) -> bytes:
    return (b"POST /v1/models/quickdraw:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + (b"Content-Length: %d\r\n" % length if length is not None else b"")
            + (b"Transfer-Encoding: chunked\r\n" if chunked else b"") + b"\r\n")


def long_drawing(points: int) -> list:
    return [[list(range(points)), [i % 256 for i in range(points)]]]


BAD_BODIES = [
    (b"not json", 400, "invalid_json"),
    (b'{"instances": [', 400, "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
    (b'{"instances": [[[[1e999, 2], [3, 4]]]]}', 400, "non_finite_coordinate"),
    (b'{"instances": [[[[NaN, 2], [3, 4]]]]}', 400, "non_finite_coordinate"),
    (b'{"instances": [[[[' + b"9" * 400 + b', 2], [3, 4]]]]}', 400, "non_finite_coordinate"),
    (b'"instances"', 400, "not_an_object"),
    (b'{"inputs": {}}', 400, "missing_instances"),
    (b'{"instances": []}', 400, "instance_count"),
    (json.dumps({"instances": [long_drawing(2)] * 65}).encode(), 400, "instance_count"),
    (b'{"instances": [[[["a", "b"], [1, 2]]]]}', 400, "non_numeric_coordinate"),
    (b'{"instances": [[[[1e308, 2], [3, 4]]]]}', 400, "non_finite_coordinate"),
    (b'{"instances": [[[[1, 2], [1]]]]}', 400, "xy_length_mismatch"),
    (b'{"instances": [[]]}', 400, "empty_drawing"),
    (b'{"instances": [{"drawing": [[[1, 2], [3, 4]]], "target": "zebra"}]}', 400,
     "unknown_target"),
    (b'{"instances": [{"drawing": [[[1, 2], [3, 4]]], "target": ["cat"]}]}', 400, "bad_target"),
    (b'{"instances": [[[[1, 2], [3, 4]]]], "signature_name": "predict_ink"}', 400,
     "unknown_signature"),
    (json.dumps({"instances": [long_drawing(20_000)]}).encode(), 400, "too_many_points"),
    (json.dumps({"instances": [long_drawing(1_000_000)]}).encode(), 413, "too_many_bytes"),
]


def test_bad_requests_get_a_4xx_with_a_reason_and_the_server_stays_up(server):
    predict(server, {"instances": [long_drawing(100)]})
    start = server.rss_mib()
    for _ in range(3):
        for body, code, reason in BAD_BODIES:
            status, answer = raw_post(server, post_head(len(body)), body)
            assert (status, answer["reason"]) == (code, reason), (body[:80], answer)
            assert answer["error"] and "\n" not in answer["error"]
    # a chunked body of 50 MB (no declared length), a declared length past the limit
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"1," * (1 << 19))
    assert raw_post(server, post_head(chunked=True), chunk * 50)[0] == 413
    assert raw_post(server, post_head(99999999999))[0] == 413
    status, answer = call(server, "/v1/models/quickdraw:predict")  # GET
    assert (status, answer["reason"]) == (405, "method_not_allowed")
    assert server.alive()
    assert server.rss_mib() - start < 300, "memory grew by %.0f MiB" % (server.rss_mib() - start)
    assert predict(server, {"instances": [long_drawing(100)]})[0] == 200


def test_one_request_body_for_this_server_and_tf_serving(server, serving_export, real_lines):
    """The body deploy.serving_request writes for TF Serving (its row format of the
    export's serving_default inputs) gets here the classes and scores that the
    signature, run as TF Serving runs it, gives; the same drawings as ndjson
    strokes get the same answer."""
    import tensorflow as tf

    from deploy import serving_request
    lines = real_lines[7::301]
    body = {"instances": serving_request.instances(
        [ndjson_format.check_line(line).points for line in lines])}
    status, answer = predict(server, body)
    assert status == 200, answer
    signature = tf.saved_model.load(str(serving_export[0])).signatures["serving_default"]
    specs = signature.structured_input_signature[1]
    engine = signature(**{k: tf.constant([row[k] for row in body["instances"]], specs[k].dtype)
                          for k in specs})
    assert len(answer["predictions"]) == len(lines) > 20
    for prediction, classes, scores in zip(answer["predictions"], engine["classes"].numpy(),
                                           engine["scores"].numpy()):
        assert prediction["classes"] == [c.decode() for c in classes]
        np.testing.assert_allclose(prediction["scores"], scores, atol=1e-5)
    status, strokes = predict(server, {"instances": [json.loads(line)["drawing"]
                                                     for line in lines]})
    assert [p["classes"] for p in strokes["predictions"]] == \
        [p["classes"] for p in answer["predictions"]]
    np.testing.assert_allclose([p["scores"] for p in strokes["predictions"]],
                               [p["scores"] for p in answer["predictions"]], atol=1e-5)
