"""Limits on what one HTTP connection may hold, so that hostile clients cannot
take the server's memory or its connection slots.

uvicorn picks its httptools parser when httptools is installed; that parser
puts no bound on a header's size, and neither parser has a deadline for a
request's head or body (uvicorn's keep-alive timeout only runs between
requests, and any byte resets it). So the server runs uvicorn's h11 parser,
whose ``h11_max_incomplete_event_size`` bounds the bytes of a request head,
through ``GuardedH11Protocol``, which adds:

- a header deadline: a request's head must be complete ``header_timeout_s``
  after the connection opened (or after its first byte, on a kept-alive
  connection), however slowly the bytes come;
- a body deadline: its body must be complete ``body_timeout_s`` after the head;
- a cap on the number of headers;
- a request that frames its body twice (Content-Length and Transfer-Encoding)
  is refused: h11 reads the chunks, a proxy in front may read the length, and
  the bytes between would be taken for another request;
- a client that half-closes its side after its request still gets the answer
  (asyncio closes both sides on EOF unless told otherwise);
- the connection limit, checked when a request's head is complete: a request
  takes the slot of the connection that has waited longest without sending a
  complete head (idle, or slow), and is refused with a 503 only when every
  other connection has a request in progress.

Every refusal is answered in JSON, ``{"error": ..., "reason": ...}``, as the
API's own errors are, and counted by reason in ``counts``.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

# Reasons of the refusals made here, as they appear in answers and counts.
REASONS = {
    "header_too_large": "the request head is over --max_header_bytes (431)",
    "too_many_headers": "the request has more than --max_headers headers (431)",
    "bad_http": "the bytes are not an HTTP/1.1 request, or frame its body twice "
                "(Content-Length and Transfer-Encoding) (400)",
    "header_timeout": "the head was not complete within --header_timeout (408)",
    "body_timeout": "the body was not complete within --body_timeout (408)",
    "too_many_connections": "every connection slot holds a request in progress (503)",
    "evicted": "the connection's slot went to a complete request while its own head "
               "was incomplete (503)",
}


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may hold (``quickdraw-serve --help`` explains each)."""
    max_connections: int = 256
    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The limits' flags, with their defaults."""
    d = ConnectionLimits()
    parser.add_argument("--max_connections", type=int, default=d.max_connections,
                        help="connections held at once; past it, a complete request takes the "
                             "slot of the connection that has waited longest without one, "
                             "else gets a 503")
    parser.add_argument("--max_header_bytes", type=int, default=d.max_header_bytes,
                        help="bytes of a request's head (request line and headers); "
                             "larger heads get a 431")
    parser.add_argument("--max_headers", type=int, default=d.max_headers,
                        help="headers per request; more get a 431")
    parser.add_argument("--header_timeout", type=float, default=d.header_timeout_s,
                        help="seconds for a request's head to arrive, from the connection's "
                             "opening (or its first byte on a kept-alive connection); then a 408")
    parser.add_argument("--body_timeout", type=float, default=d.body_timeout_s,
                        help="seconds for a request's body to arrive, from the end of its "
                             "head; then a 408")


def limits_from(args: argparse.Namespace) -> ConnectionLimits:
    """The limits of parsed flags; ValueError names a flag out of range."""
    for name in ("max_connections", "max_header_bytes", "max_headers", "header_timeout",
                 "body_timeout"):
        if not getattr(args, name) > 0:
            raise ValueError("--%s must be positive" % name)
    return ConnectionLimits(max_connections=args.max_connections,
                            max_header_bytes=args.max_header_bytes, max_headers=args.max_headers,
                            header_timeout_s=args.header_timeout,
                            body_timeout_s=args.body_timeout)


def head_size(scope: dict) -> int:
    """The bytes of a request's head as received (request line, headers and
    their line ends; the whitespace h11 strips aside)."""
    line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 13
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


def framed_twice(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when a head gives its body's length twice over (RFC 9112, 6.1: a
    server may refuse it, and must not keep the connection)."""
    names = {name.lower() for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


def error_body(reason: str, message: str) -> bytes:
    return json.dumps({"error": message, "reason": reason}).encode()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and limits of ``limits``.

    ``guarded_protocol`` makes a subclass with its limits and counts; uvicorn
    creates one instance per connection.
    """

    limits = ConnectionLimits()
    counts: collections.Counter = collections.Counter()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # checked in _admit, to answer in JSON and make room
        self._app = self.app
        self.app = self._admit
        self._deadline = None
        self._phase = "head"  # head, body, or None while a request is answered
        self._head_bytes = 0
        self._waiting_since = self.loop.time()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def eof_received(self) -> bool:
        """Keeps the socket open for the answer of a request that was received whole
        before its client half-closed (``nc -N``, ``shutdown(SHUT_WR)``); the
        connection closes after that answer. Otherwise asyncio closes it now."""
        if (self.cycle is not None and not self.cycle.response_complete
                and self.conn.their_state in (h11.DONE, h11.MUST_CLOSE)):
            self.cycle.keep_alive = False
            return True
        return False

    def data_received(self, data: bytes) -> None:
        if self._phase == "head" and self.conn.their_state is h11.IDLE:
            self._head_bytes += len(data)
            if self._deadline is None:  # a kept-alive connection's next request begins
                self._arm(self.limits.header_timeout_s, self._head_expired)
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:  # the next request may begin
            self._disarm()  # until its first byte, uvicorn's keep-alive timeout applies
            self._phase, self._head_bytes = "head", 0
            self._waiting_since = self.loop.time()
        else:  # answered before its body ended, or a pipelined request follows
            self._follow()

    def send_400_response(self, msg: str) -> None:
        if self._phase == "head" and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "header_too_large", "the request head is over %d bytes"
                         % self.limits.max_header_bytes)
        else:
            self._refuse(400, "bad_http", "the bytes received are not an HTTP/1.1 request")

    def _follow(self) -> None:
        """Moves the deadline along with the request: from its head to its body, off
        once the request has been received."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._phase != "head":  # a body that ended after its answer: a new head may come
                self._phase, self._head_bytes = "head", 0
                self._waiting_since = self.loop.time()
                self._arm(self.limits.header_timeout_s, self._head_expired)
            return
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._phase = "body"
                self._arm(self.limits.body_timeout_s, self._body_expired)
        else:
            self._phase = None
            self._disarm()

    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _waiting(self) -> bool:
        """True while the connection holds a slot without a complete request head."""
        return (self._phase == "head" and self.conn.their_state is h11.IDLE
                and (self.cycle is None or self.cycle.response_complete)
                and not self.transport.is_closing())

    def _head_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(408, "header_timeout", "the request head did not arrive within %g s"
                         % self.limits.header_timeout_s)
        else:
            self.counts["header_timeout"] += 1
            self.transport.close()

    def _body_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(408, "body_timeout", "the request body did not arrive within %g s"
                         % self.limits.body_timeout_s)
        else:  # already answered (without reading the whole body)
            self.counts["body_timeout"] += 1
            self.transport.close()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answers outside the app (h11's state is bypassed) and closes; a request in
        progress is told that its client left, so that the app stops there."""
        self.counts[reason] += 1
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        body = error_body(reason, message)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES[status])]
        head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _make_room(self) -> bool:
        """Closes the connections beyond the limit that wait longest without a complete
        head; False (and nothing closed) when too few of them wait."""
        excess = len(self.connections) - self.limits.max_connections
        if excess <= 0:
            return True
        waiting = sorted((c for c in self.connections
                          if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting()),
                         key=lambda c: c._waiting_since)
        if len(waiting) < excess:
            return False
        for connection in waiting[:excess]:
            connection._disarm()
            if connection._head_bytes:
                connection._refuse(503, "evicted", "a complete request took this connection's "
                                   "slot while its head was incomplete")
            else:
                connection.counts["evicted"] += 1
                connection.transport.close()
        return True

    async def _admit(self, scope, receive, send) -> None:
        """The checks that need the whole head, then the app."""
        refusal = None
        if head_size(scope) > self.limits.max_header_bytes:  # h11 bounds incomplete heads only
            refusal = 431, "header_too_large", "the request head is over %d bytes" \
                % self.limits.max_header_bytes
        elif len(scope["headers"]) > self.limits.max_headers:
            refusal = 431, "too_many_headers", "more than %d headers" % self.limits.max_headers
        elif framed_twice(scope["headers"]):
            refusal = 400, "bad_http", "the request has both Content-Length and " \
                "Transfer-Encoding"
        elif len(self.tasks) > self.limits.max_connections or not self._make_room():
            refusal = 503, "too_many_connections", "%d connections hold requests in progress" \
                % self.limits.max_connections
        if refusal is None:
            await self._app(scope, receive, send)
            return
        status, reason, message = refusal
        self.counts[reason] += 1
        body = error_body(reason, message)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.run(http=...)`` with these limits and fresh counts;
    pass ``h11_max_incomplete_event_size=limits.max_header_bytes`` with it."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"limits": limits, "counts": collections.Counter()})
