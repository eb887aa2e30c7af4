"""HTTP(S) requests that end: timeouts, bounded retries, and cancellation.

Every socket has a timeout (connect and each read); a failure worth another
attempt (a network error, a timeout, HTTP 408, 429 or 5xx) is tried again
while the attempts in a row that bring nothing new stay within
``Settings.retries``, pausing twice as long after each; and a ``Cancel``
shared by several fetches stops them all at once (Ctrl-C, a full disk),
shutting the connections that wait for data.
"""
from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Iterator

from pipeline.object_digests import ObjectInfo, object_info

MAX_PAUSE = 30.0            # seconds, the longest pause between two attempts
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
USER_AGENT = "quickdraw-download"


class FetchError(Exception):
    """A file that could not be fetched, with the reason in one line.
    ``fatal``: the cause (a full disk) stops the other downloads too."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class Cancelled(Exception):
    """The run is stopping (Ctrl-C, a full disk): the ``.part`` stays to resume."""


class Cancel:
    """Stops the fetches that share it: once set, each raises ``Cancelled`` at
    its next block, and the connections waiting for one are shut at once, so
    that Ctrl-C does not wait for a read timeout."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def watching(self, sock: socket.socket) -> Iterator[None]:
        with self._lock:
            if self._event.is_set():
                raise Cancelled()
            self._open.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._open.discard(sock)


class Retry(Exception):
    """A failure worth another attempt (network, timeout, 5xx)."""


@dataclass(frozen=True)
class Settings:
    timeout: float = 30.0   # seconds a connect or a read may wait
    retries: int = 5        # attempts in a row that bring no new byte, after the first


@contextlib.contextmanager
def request(url: str, method: str, headers: dict[str, str], timeout: float, cancel: Cancel
             ) -> Iterator[http.client.HTTPResponse]:
    parts = urllib.parse.urlsplit(url)
    connection = (http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection)
    conn = connection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.connect()
        # The socket itself: the connection drops it once a response that
        # closes the connection arrives, but the body is still read from it.
        with cancel.watching(conn.sock):
            path = parts.path + ("?" + parts.query if parts.query else "")
            conn.request(method, path, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
            response = conn.getresponse()
            if response.status in RETRY_STATUS:
                raise Retry("HTTP %d %s" % (response.status, response.reason))
            encoding = response.getheader("Content-Encoding", "identity").lower()
            if encoding != "identity":
                raise FetchError("the server sent Content-Encoding %s; only plain objects are supported" % encoding)
            yield response
    finally:
        conn.close()


def declared_length(response: http.client.HTTPResponse) -> int | None:
    """The Content-Length, or None when there is none, it is not ASCII digits
    (``str.isdigit`` takes ``²`` and other digits ``int`` refuses) or it has
    more than 18 (an exabyte; ``int`` refuses 4,300)."""
    length = (response.getheader("Content-Length") or "").strip()
    return int(length) if length.isascii() and length.isdigit() and len(length) <= 18 else None


def status_error(response: http.client.HTTPResponse) -> FetchError:
    return FetchError("HTTP %d %s" % (response.status, response.reason))


def attempts(settings: Settings, progress: Callable[[], int], cancel: Cancel,
              what: Callable[[], None]) -> None:
    """Calls ``what`` until it returns; a ``Retry`` or network error is tried
    again while the attempts in a row that add nothing (``progress`` did not
    grow) stay within ``settings.retries``, with pauses of 1, 2, 4... s (at
    most the timeout to start with, at most ``MAX_PAUSE``)."""
    idle = 0
    while True:
        before = progress()
        try:
            return what()
        except (Retry, OSError, http.client.HTTPException) as e:
            reason = _network_reason(e)
        if cancel.is_set():
            raise Cancelled()
        idle = 0 if progress() > before else idle + 1
        if idle > settings.retries:
            raise FetchError("%s (gave up after %d attempts in a row without progress)" % (reason, idle))
        pause = min(MAX_PAUSE, min(1.0, settings.timeout) * 2 ** (idle - 1 if idle else 0))
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            if cancel.is_set():
                raise Cancelled()
            time.sleep(min(0.1, pause))


def _network_reason(error: BaseException) -> str:
    if isinstance(error, Retry):
        return str(error)
    if isinstance(error, TimeoutError):
        return "no answer for the timeout (%s)" % (error or "timed out")
    text = " ".join(str(error).split())
    return "%s: %s" % (type(error).__name__, text) if text else type(error).__name__


def head(url: str, settings: Settings, cancel: Cancel | None = None) -> ObjectInfo:
    """The object's size and digests, from a HEAD request (retried like a fetch)."""
    cancel = cancel or Cancel()
    found: list[ObjectInfo] = []

    def ask() -> None:
        with request(url, "HEAD", {}, settings.timeout, cancel) as response:
            if response.status != 200:
                raise status_error(response)
            length = declared_length(response)
            if length is None:
                raise FetchError("the server gave no size (Content-Length) for the object")
            found.append(object_info(response, length))

    attempts(settings, lambda: 0, cancel, ask)
    return found[0]
