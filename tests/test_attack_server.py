"""quickdraw-serve against hostile clients, over real sockets: endless and
numerous headers, clients that hold connection slots by sending slowly or not
at all, bodies that never end, bytes that are not HTTP. The server runs in a
process of its own with quickdraw-serve's wiring and a model without TensorFlow
(``serving_helpers.PointCountModel``), with short deadlines."""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import socket
import time
import urllib.request

import pytest

from serving_helpers import (PREDICT_HEAD, SQUARE_BODY, ServerProcess, SlowClients, exchange,
                             header_flood, predict_request, read_answer, seconds_until_served)

SLOTS = 4
HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server():
    process = ServerProcess("--max_connections=%d" % SLOTS, "--header_timeout=%g" % HEADER_TIMEOUT,
                            "--body_timeout=%g" % BODY_TIMEOUT, module="serving_helpers",
                            timeout=60)
    yield process
    process.stop()


def refused(server) -> dict:
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as answer:
        return json.loads(answer.read())["refused_connections"]


def reason_of(answer: object) -> str | None:
    return answer.get("reason") if isinstance(answer, dict) else None


def kept_alive_status(sock: socket.socket) -> int:
    """Reads one answer (head, then its Content-Length of body) off a kept-alive
    connection; its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def assert_served(server) -> None:
    status, answer = exchange(server.port, predict_request(), timeout=10)
    assert status == 200 and answer["predictions"][0]["classes"][0] == "cat", answer


def test_an_endless_header_is_cut_at_the_limit_and_memory_stays_flat(server):
    assert_served(server)
    before = server.rss_mib()
    peak = [before]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        floods = [pool.submit(header_flood, server.port, 100 << 20) for _ in range(4)]
        while not all(f.done() for f in floods):
            peak.append(server.rss_mib())
            time.sleep(0.02)
    sent = [f.result() for f in floods]
    # the server closed each connection after the limit, well before its 100 MB
    assert max(sent) < 32 << 20, sent
    assert max(peak) - before < 40, "server memory grew by %.0f MiB" % (max(peak) - before)
    assert_served(server)
    # a head over the limit sent at once gets the answer before the connection ends
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(PREDICT_HEAD + b"X-A: " + b"a" * 20000 + b"\r\n\r\n")
        assert read_answer(sock) == (431, {
            "error": "the request head is over 16384 bytes", "reason": "header_too_large"})
    assert refused(server)["header_too_large"] >= 5


def test_too_many_headers_and_bytes_that_are_not_http_get_json(server):
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    status, answer = exchange(server.port, PREDICT_HEAD + many + b"Content-Length: %d\r\n\r\n"
                              % len(SQUARE_BODY) + SQUARE_BODY)
    assert (status, reason_of(answer)) == (431, "too_many_headers"), answer
    fewer = b"".join(b"X-%d: 1\r\n" % i for i in range(90))
    assert exchange(server.port, PREDICT_HEAD + fewer + b"Content-Length: %d\r\n\r\n"
                    % len(SQUARE_BODY) + SQUARE_BODY)[0] == 200
    tls_hello = bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64
    status, answer = exchange(server.port, tls_hello)
    assert (status, reason_of(answer)) == (400, "bad_http") and answer["error"]


def test_slow_and_silent_clients_lose_their_slots(server):
    """A client that sends nothing and more clients sending their heads a byte at a
    time than there are slots: a complete request takes the slots of the two that
    waited longest at once, and the head deadline ends the others, answering those
    that had begun a request."""
    start = time.monotonic()
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=HEADER_TIMEOUT + 10)
    time.sleep(0.1)
    slow = SlowClients(server.port, SLOTS, b"POST /v1/models/quickdraw:pre", b"dict HTTP/1.1\r\n",
                       interval=0.2, duration=HEADER_TIMEOUT + 10)
    try:
        time.sleep(0.3)
        waited, refusals = seconds_until_served(server.port, timeout=HEADER_TIMEOUT + 10)
        assert waited is not None and waited < 1.0 and refusals == 0, (waited, refusals)
        assert silent.recv(100) == b""  # its slot taken: closed without an answer
        assert time.monotonic() - start < HEADER_TIMEOUT  # before any deadline
        late = socket.create_connection(("127.0.0.1", server.port), timeout=HEADER_TIMEOUT + 10)
        slow.wait(HEADER_TIMEOUT + 10)
        assert None not in slow.closed_after, slow.closed_after
        assert slow.closed_after[0] < HEADER_TIMEOUT < max(slow.closed_after) < \
            HEADER_TIMEOUT + 1.5, slow.closed_after
        assert slow.answers[0] == (503, {"error": "a complete request took this connection's "
                                         "slot while its head was incomplete", "reason": "evicted"})
        assert slow.answers[1:] == [(408, {"error": "the request head did not arrive within 1.5 s",
                                           "reason": "header_timeout"})] * (SLOTS - 1)
        assert late.recv(100) == b""  # within the limit, sending nothing: the deadline ends it
        assert time.monotonic() - start < 2 * HEADER_TIMEOUT + 1.5
        late.close()
    finally:
        slow.close()
        silent.close()
    counts = refused(server)
    assert counts["evicted"] >= 2 and counts["header_timeout"] >= SLOTS, counts


def test_a_request_answered_before_its_body_ended_leaves_a_head_deadline(server):
    """A kept-alive connection whose body ends after its answer waits for a new head,
    under the head's deadline."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        assert kept_alive_status(sock) == 200  # answered without its body
        sock.sendall(b"12345")
        time.sleep(0.5)
        sock.sendall(b"GET /heal")
        start = time.monotonic()
        assert read_answer(sock) == (408, {"error": "the request head did not arrive within "
                                           "1.5 s", "reason": "header_timeout"})
        assert time.monotonic() - start < HEADER_TIMEOUT + 1
    # one whose body never ends is closed at the body deadline
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        assert kept_alive_status(sock) == 200
        assert sock.recv(100) == b""
        assert BODY_TIMEOUT - 0.1 < time.monotonic() - start < BODY_TIMEOUT + 1


def test_idle_kept_alive_connections_give_their_slots_to_requests(server):
    idle = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            for _ in range(SLOTS)]
    try:
        for connection in idle:
            connection.request("GET", "/healthz")
            assert connection.getresponse().read()
        assert_served(server)  # a fifth connection: the oldest idle one is closed for it
        closed = []
        for connection in idle:
            connection.sock.settimeout(0.2)
            try:
                closed.append(connection.sock.recv(1) == b"")
            except TimeoutError:
                closed.append(False)
        assert closed == [True] + [False] * (SLOTS - 1)
    finally:
        for connection in idle:
            connection.close()


def test_slow_bodies_are_cut_by_their_deadline_and_free_their_slots(server):
    """Bodies sent a byte at a time hold every slot with a request in progress: a
    complete request gets a 503 until the body deadline ends them, then is served."""
    head = PREDICT_HEAD + b"Content-Length: %d\r\n\r\n" % len(SQUARE_BODY)
    slow = SlowClients(server.port, SLOTS, head, SQUARE_BODY, interval=0.2,
                       duration=BODY_TIMEOUT + 10)
    try:
        time.sleep(0.3)
        status, answer = exchange(server.port, predict_request())
        assert (status, reason_of(answer)) == (503, "too_many_connections"), answer
        waited, refusals = seconds_until_served(server.port, timeout=BODY_TIMEOUT + 10)
        assert waited is not None and waited < BODY_TIMEOUT + 1.5, waited
        slow.wait(BODY_TIMEOUT + 10)
        assert None not in slow.closed_after and max(slow.closed_after) < BODY_TIMEOUT + 1.5
        assert slow.answers == [(408, {"error": "the request body did not arrive within 1.5 s",
                                       "reason": "body_timeout"})] * SLOTS
    finally:
        slow.close()
    assert refused(server)["body_timeout"] >= SLOTS
    assert_served(server)


def test_a_body_framed_twice_is_refused_and_the_connection_closed(server):
    """Content-Length and Transfer-Encoding together: h11 would read the chunks while
    a proxy in front may read the length, so the bytes between would be smuggled in
    as a request of their own."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SQUARE_BODY), SQUARE_BODY)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(PREDICT_HEAD + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
                     % len(chunked) + chunked + smuggled)
        status, answer = read_answer(sock)  # TimeoutError, had the connection stayed open
    assert (status, answer) == (400, {"error": "the request has both Content-Length and "
                                      "Transfer-Encoding", "reason": "bad_http"})
    for framing in (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                    b"transfer-encoding: identity\r\ncontent-length: 5\r\n"):
        status, answer = exchange(server.port, PREDICT_HEAD + framing + b"\r\n12345")
        assert (status, reason_of(answer)) == (400, "bad_http"), answer
    assert_served(server)


def test_a_client_that_half_closes_after_its_request_gets_the_answer(server):
    for request in (predict_request(), b"GET /healthz HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            status, answer = read_answer(sock)
        assert status == 200 and isinstance(answer, dict), (status, answer)
    # a head cut by the half-close is closed without an answer, at once
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(PREDICT_HEAD)
        sock.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        assert read_answer(sock) == (None, None)
        assert time.monotonic() - start < 1
    assert_served(server)


def test_a_compressed_body_is_refused_not_read_as_json(server):
    import gzip
    body = gzip.compress(SQUARE_BODY)
    for coding in (b"gzip", b"identity, gzip", b"deflate", b"br"):
        status, answer = exchange(server.port, PREDICT_HEAD + b"Content-Encoding: %s\r\n"
                                  b"Content-Length: %d\r\n\r\n" % (coding, len(body)) + body)
        assert (status, reason_of(answer)) == (415, "unsupported_content_encoding"), answer
    status, answer = exchange(server.port, PREDICT_HEAD + b"Content-Encoding: identity\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(SQUARE_BODY) + SQUARE_BODY)
    assert status == 200, answer


def test_a_websocket_upgrade_is_plain_http_under_the_guard(server):
    """The API has no WebSocket; an upgraded connection would leave the guard (its
    slot and deadlines) and answer in plain text."""
    upgrade = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    status, answer = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + upgrade
                              + b"\r\n")
    assert status == 200 and answer["status"] == "ok", answer
    status, answer = exchange(server.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n" + upgrade
                              + b"\r\n")
    assert (status, reason_of(answer)) == (404, "not_found"), answer


def test_bad_requests_do_not_flood_the_log():
    """Each malformed request or upgrade made uvicorn print a warning: any
    client could fill the log. They are answered and counted instead."""
    process = ServerProcess(module="serving_helpers", timeout=60)
    try:
        upgrade = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                   b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        for _ in range(20):
            assert exchange(process.port, b"\x16\x03\x01 not http\r\n\r\n")[0] == 400
            assert exchange(process.port, upgrade)[0] == 200
        assert refused(process)["bad_http"] >= 20
    finally:
        process.stop()
    output = process.process.stdout.read().decode()
    assert "Invalid HTTP request" not in output and "WebSocket" not in output \
        and "upgrade" not in output, output


def test_between_requests_the_keep_alive_timeout_applies_not_the_head_deadline(server):
    """docs/serving.md: an idle kept-alive connection is closed after uvicorn's
    keep-alive timeout (5 s), not the shorter --header_timeout of a request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read()
        start = time.monotonic()
        assert connection.sock.recv(1) == b""
        assert 5 - 0.5 < time.monotonic() - start < 5 + 1.5
    finally:
        connection.close()


def test_sigterm_finishes_the_requests_in_flight_then_ends():
    """Kubernetes stops a pod with SIGTERM: a request the model is working on
    still gets its answer, and the server then ends, by the signal it got
    (uvicorn raises it again once it has shut down gracefully)."""
    import signal
    import threading

    process = ServerProcess("--model_seconds=2", module="serving_helpers", timeout=60)
    answers = []
    try:
        asking = threading.Thread(target=lambda: answers.append(exchange(process.port, predict_request())))
        asking.start()
        time.sleep(0.7)  # the request is in the model
        process.process.send_signal(signal.SIGTERM)
        asking.join(30)
        assert process.process.wait(30) == -signal.SIGTERM
    finally:
        process.stop()
    [(status, body)] = answers
    assert status == 200 and len(body["predictions"]) == 1
