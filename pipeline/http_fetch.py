"""One object of the dataset's bucket, fetched over HTTP(S) into a folder.

A fetch is resumed, verified and atomic, and safe beside another downloader:

- the bytes go to ``<name>.part`` in the destination folder; a fetch that
  stops (a dropped connection, a stall, Ctrl-C, a full disk) leaves it, and
  the next attempt, in this run or a later one, asks only for the rest
  (``Range: bytes=N-``, with ``If-Range`` so that a changed object is sent
  whole);
- once complete, the file is checked against the object's size and, when the
  server gives one in ``x-goog-hash`` (Cloud Storage does), its CRC-32C (else
  its MD5) (``pipeline.object_digests``). A mismatch is fetched again from
  the first byte once, then reported. Only a verified file is renamed to
  ``<name>``, durably (``atomic_storage.publish_local``);
- ``<name>.lock`` (``flock``) is held for the whole fetch, so a second
  downloader of the same file into the same folder waits, then finds it
  complete instead of writing into the same ``.part``;
- every socket has a timeout (connect and each read), a body that brings
  fewer than ``LOW_SPEED_BYTES`` in a timeout's time is dropped as stalled,
  and the attempts that bring no new byte are limited (``retries``), pausing
  twice as long after each (``pipeline.http_requests``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import http.client
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import atomic_storage
from pipeline.http_requests import (Cancel, Cancelled, FetchError, Retry, Settings, attempts,
                                    declared_length, request, status_error)
from pipeline.object_digests import ObjectInfo, mismatch, object_info

CHUNK = 256 * 1024          # at most this much is read from the socket at once
LOW_SPEED_BYTES = 1024      # fewer bytes than this in one timeout's time: stalled
PART, LOCK = ".part", ".lock"
# Local write errors that stop the whole download, not one file.
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


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
    with request(url, "GET", headers, settings.timeout, cancel) as response:
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
            raise Retry("HTTP 416: the server refused the range from byte %d" % start)
        else:
            raise status_error(response)
        length = declared_length(response)
        served = object_info(response, info.size if length is None else start + length)
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
            raise Retry("the connection closed at byte %d of %d" % (done, size))
        with _local("write"):
            _write_all(fd, chunk)
        done += len(chunk)
        on_bytes(len(chunk))
        window_bytes += len(chunk)
        now = time.monotonic()
        if now - window_start >= timeout:
            if window_bytes < LOW_SPEED_BYTES:
                raise Retry("stalled: %d bytes in %.0f s at byte %d of %d"
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
            attempts(settings, lambda: _size(part), cancel,
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
