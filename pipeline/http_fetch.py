"""One object of the dataset's bucket, fetched over HTTP(S) into a folder.

A fetch is resumed, verified and atomic, and safe beside another downloader:

- the bytes go to ``<name>.part`` in the destination folder; a fetch that
  stops (a dropped connection, a stall, Ctrl-C, a full disk) leaves it, and
  the next attempt, in this run or a later one, asks only for the rest
  (``Range: bytes=N-``, with ``If-Range`` so that a changed object is sent
  whole);
- once complete, the file is checked against the object's size and, when the
  server gives one in ``x-goog-hash`` (Cloud Storage does), its CRC-32C (else
  its MD5). A mismatch is fetched again from the first byte once, then
  reported. Only a verified file is renamed to ``<name>``;
- ``<name>.lock`` (``flock``) is held for the whole fetch, so a second
  downloader of the same file into the same folder waits, then finds it
  complete instead of writing into the same ``.part``;
- every socket has a timeout (connect and each read), a body that brings
  fewer than ``LOW_SPEED_BYTES`` in a timeout's time is dropped as stalled,
  and the attempts that bring no new byte are limited (``retries``), pausing
  twice as long after each.
"""
from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import http.client
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import google_crc32c

import atomic_storage

CHUNK = 256 * 1024          # at most this much is read from the socket at once
LOW_SPEED_BYTES = 1024      # fewer bytes than this in one timeout's time: stalled
MAX_PAUSE = 30.0            # seconds, the longest pause between two attempts
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
USER_AGENT = "quickdraw-download"
PART, LOCK = ".part", ".lock"
# Local write errors that stop the whole download, not one file.
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


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


class _Retry(Exception):
    """A failure worth another attempt (network, timeout, 5xx)."""


@dataclass(frozen=True)
class Settings:
    timeout: float = 30.0   # seconds a connect or a read may wait
    retries: int = 5        # attempts in a row that bring no new byte, after the first


@dataclass(frozen=True)
class ObjectInfo:
    """What the server says of an object: its size, digests (base64, as in
    ``x-goog-hash``) and ETag."""
    size: int
    crc32c: str | None = None
    md5: str | None = None
    etag: str | None = None

    @property
    def check(self) -> str:
        return "crc32c" if self.crc32c else "md5" if self.md5 else "size"


@dataclass(frozen=True)
class Outcome:
    present: bool    # the file was already complete and verified: nothing fetched
    fetched: int     # bytes received
    check: str       # "crc32c", "md5" or "size": what verified it
    refetched: str | None = None  # why the first complete copy was refused, if it was


def object_url(base_url: str, data_format: str, name: str) -> str:
    """``<base>/full/<format>/<name>.ndjson``, the name quoted as the bucket
    wants it (``sea turtle`` -> ``sea%20turtle``)."""
    return "%s/full/%s/%s.ndjson" % (base_url.rstrip("/"), data_format, urllib.parse.quote(name, safe=""))


def parse_goog_hash(values: list[str]) -> dict[str, str]:
    """``x-goog-hash: crc32c=n03x6A==, md5=Ojk9...`` (one header or several)
    -> ``{"crc32c": ..., "md5": ...}``."""
    out = {}
    for value in values:
        for item in value.split(","):
            kind, _, digest = item.strip().partition("=")
            if digest:
                out[kind.strip().lower()] = digest.strip()
    return out


def _info(response: http.client.HTTPResponse, size: int) -> ObjectInfo:
    digests = parse_goog_hash(response.headers.get_all("x-goog-hash") or [])
    return ObjectInfo(size, digests.get("crc32c"), digests.get("md5"), response.getheader("ETag"))


@contextlib.contextmanager
def _request(url: str, method: str, headers: dict[str, str], timeout: float, cancel: Cancel
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
                raise _Retry("HTTP %d %s" % (response.status, response.reason))
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


def _status_error(response: http.client.HTTPResponse) -> FetchError:
    return FetchError("HTTP %d %s" % (response.status, response.reason))


def _attempts(settings: Settings, progress: Callable[[], int], cancel: Cancel,
              what: Callable[[], None]) -> None:
    """Calls ``what`` until it returns; a ``_Retry`` or network error is tried
    again while the attempts in a row that add nothing (``progress`` did not
    grow) stay within ``settings.retries``, with pauses of 1, 2, 4... s (at
    most the timeout to start with, at most ``MAX_PAUSE``)."""
    idle = 0
    while True:
        before = progress()
        try:
            return what()
        except (_Retry, OSError, http.client.HTTPException) as e:
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
    if isinstance(error, _Retry):
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
        with _request(url, "HEAD", {}, settings.timeout, cancel) as response:
            if response.status != 200:
                raise _status_error(response)
            length = declared_length(response)
            if length is None:
                raise FetchError("the server gave no size (Content-Length) for the object")
            found.append(_info(response, length))

    _attempts(settings, lambda: 0, cancel, ask)
    return found[0]


def file_digest(path: Path, kind: str) -> str:
    """The base64 CRC-32C or MD5 of a file, as ``x-goog-hash`` writes them."""
    digest = google_crc32c.Checksum() if kind == "crc32c" else hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


def mismatch(path: Path, info: ObjectInfo) -> str | None:
    """Why the file at ``path`` is not the object ``info`` describes, or None."""
    size = path.stat().st_size
    if size != info.size:
        return "size %d, expected %d" % (size, info.size)
    if info.check != "size":
        expected = getattr(info, info.check)
        got = file_digest(path, info.check)
        if got != expected:
            return "%s %s, expected %s" % (info.check.upper().replace("CRC32C", "CRC-32C"), got, expected)
    return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds ``path`` locked (``flock``); the lock file is removed on release.

    A waiter that gets the lock of a file already removed (its inode is no
    longer the name's) starts again, so two holders never overlap."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def _local(what: str) -> Iterator[None]:
    """A local file error as a ``FetchError``; a full disk is fatal."""
    try:
        yield
    except OSError as e:
        raise FetchError("cannot %s: %s" % (what, e.strerror or e), fatal=e.errno in FATAL_ERRNOS) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _receive(url: str, part: Path, info: ObjectInfo, settings: Settings,
             on_bytes: Callable[[int], None], cancel: Cancel) -> None:
    """One attempt: appends the rest of the object to ``part``."""
    start = _size(part)
    if start > info.size:
        os.unlink(part)
        on_bytes(-start)
        start = 0
    if start == info.size:
        return
    headers = {"Range": "bytes=%d-" % start} if start else {}
    if start and info.etag:
        headers["If-Range"] = info.etag
    with _request(url, "GET", headers, settings.timeout, cancel) as response:
        if response.status == 206:
            expected = "bytes %d-%d/%d" % (start, info.size - 1, info.size)
            if response.getheader("Content-Range") != expected:
                raise FetchError("the server answered a range request with Content-Range %r, expected %r; "
                                 "the object changed: run again" % (response.getheader("Content-Range"), expected))
        elif response.status == 200:
            if start:
                on_bytes(-start)   # the object is sent whole: the partial file goes
                start = 0
        elif response.status == 416:
            os.unlink(part)
            on_bytes(-start)
            raise _Retry("HTTP 416: the server refused the range from byte %d" % start)
        else:
            raise _status_error(response)
        length = declared_length(response)
        served = _info(response, info.size if length is None else start + length)
        for field in ("size", "crc32c", "md5"):
            if getattr(info, field) and getattr(served, field) and getattr(served, field) != getattr(info, field):
                raise FetchError("the object changed during the download (%s %s, was %s): run again"
                                 % (field, getattr(served, field), getattr(info, field)))
        with _local("write %s" % part):
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if start else os.O_TRUNC), 0o644)
        try:
            _copy(response, fd, start, info.size, settings.timeout, on_bytes, cancel)
        finally:
            os.close(fd)
        if length is None and not _ended(response):
            on_bytes(-_size(part))
            os.unlink(part)
            raise FetchError("the body went on past the object's %d bytes (no Content-Length "
                             "bounded it): the copy is refused" % info.size)


def _ended(response: http.client.HTTPResponse) -> bool:
    """False when a body sent without a Content-Length (chunked, or until the
    connection closes) has more bytes after the object's size, or does not end
    within the timeout: its first bytes are then not the object, whatever their
    size. Checked because a size is all that verifies a file when the server
    gives no checksum."""
    try:
        return not response.read1(1)
    except TimeoutError:
        return False
    except (OSError, http.client.HTTPException):
        return True  # closed without a clean end: no byte past the object came


def _copy(response: http.client.HTTPResponse, fd: int, start: int, size: int, timeout: float,
          on_bytes: Callable[[int], None], cancel: Cancel) -> None:
    """Streams the body into ``fd``; a body that stops, trickles or ends short
    raises (the bytes written so far stay)."""
    done = start
    window_start, window_bytes = time.monotonic(), 0
    while done < size:
        if cancel.is_set():
            raise Cancelled()
        chunk = response.read1(min(CHUNK, size - done))
        if not chunk:
            raise _Retry("the connection closed at byte %d of %d" % (done, size))
        with _local("write"):
            _write_all(fd, chunk)
        done += len(chunk)
        on_bytes(len(chunk))
        window_bytes += len(chunk)
        now = time.monotonic()
        if now - window_start >= timeout:
            if window_bytes < LOW_SPEED_BYTES:
                raise _Retry("stalled: %d bytes in %.0f s at byte %d of %d"
                             % (window_bytes, now - window_start, done, size))
            window_start, window_bytes = now, 0


def fetch(url: str, folder: Path, name: str, info: ObjectInfo, settings: Settings,
          on_bytes: Callable[[int], None] = lambda n: None,
          cancel: Cancel | None = None) -> Outcome:
    """Makes ``folder/name`` the verified object at ``url`` (see the module's
    doc). ``on_bytes(n)`` is told of each block received (negative: bytes
    discarded and to be fetched again). Raises ``FetchError`` or ``Cancelled``."""
    final, part = folder / name, folder / (name + PART)
    cancel = cancel or Cancel()
    with _local("write into %s" % folder), file_lock(folder / (name + LOCK)):
        if final.is_file() and mismatch(final, info) is None:
            return Outcome(True, 0, info.check)
        received = [0]

        def count(n: int) -> None:
            received[0] += max(n, 0)
            on_bytes(n)

        refused = None
        for first_try in (True, False):
            _attempts(settings, lambda: _size(part), cancel,
                      lambda: _receive(url, part, info, settings, count, cancel))
            problem = mismatch(part, info)
            if problem is None:
                break
            on_bytes(-_size(part))
            os.unlink(part)
            if not first_try:
                raise FetchError("%s, again after fetching it a second time" % problem)
            refused = problem
        atomic_storage.publish_local(str(part), str(final))
        return Outcome(False, received[0], info.check, refused)
