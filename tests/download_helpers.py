"""A local stand-in for the dataset's bucket, for the download tests: a real
HTTP server in a thread that serves files as Cloud Storage does (Range
requests, ``x-goog-hash``, ETag and If-Range) and misbehaves on demand: drops
a connection, stalls, trickles, flips a byte, answers 503, ignores ranges."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import google_crc32c

REPO = Path(__file__).resolve().parent.parent
# The repository's larger real sample (one file per class but zigzag), else the bundled one.
SAMPLE = REPO / "data" / "real_sample" if (REPO / "data" / "real_sample").is_dir() else REPO / "data" / "sample"


def sample_objects(folder: Path = SAMPLE) -> dict[str, bytes]:
    """``{class: bytes}`` of the ndjson files of a folder."""
    return {p.name[:-len(".ndjson")]: p.read_bytes() for p in sorted(folder.glob("*.ndjson"))}


@dataclass
class Faults:
    """Misbehaviour, each keyed by class name; the ``once`` ones fire on the
    first request that reaches their offset, then are spent."""
    drop_at: dict[str, int] = field(default_factory=dict)                  # close at this byte, once
    stall_at: dict[str, tuple[int, float]] = field(default_factory=dict)   # (byte, seconds), once
    trickle_at: dict[str, tuple[int, float]] = field(default_factory=dict)  # one byte per seconds, once
    corrupt: dict[str, int] = field(default_factory=dict)                  # bodies with a flipped byte
    status: dict[str, list[int]] = field(default_factory=dict)             # statuses answered first
    hashes: tuple[str, ...] = ("crc32c", "md5")                           # what x-goog-hash names
    replace_after_head: dict[str, bytes] = field(default_factory=dict)    # new content once HEAD is answered
    ignore_range: bool = False
    chunk_delay: float = 0.0                                               # seconds per 4 KiB sent
    unbounded_body: dict[str, bytes] = field(default_factory=dict)          # GET: no Content-Length, these bytes after
    length_header: dict[str, str] = field(default_factory=dict)            # Content-Length sent instead of the size


@dataclass
class Request:
    method: str
    path: str
    range: str | None


class Bucket(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, objects: dict[tuple[str, str], bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects = objects
        self.faults = Faults()
        self.requests: list[Request] = []
        self.body_bytes: dict[str, int] = {}   # bytes of body sent, by class
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]

    def gets(self, name: str) -> list[Request]:
        quoted = "/%s.ndjson" % urllib.parse.quote(name, safe="")
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(quoted)]


def goog_hash(data: bytes, kinds: tuple[str, ...]) -> str:
    digests = {"crc32c": google_crc32c.Checksum(data).digest(), "md5": hashlib.md5(data).digest()}
    return ", ".join("%s=%s" % (k, base64.b64encode(digests[k]).decode()) for k in kinds)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Bucket

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        bucket, faults = self.server, self.server.faults
        with bucket.lock:
            bucket.requests.append(Request(self.command, self.path, self.headers.get("Range")))
        parts = urllib.parse.unquote(self.path).split("/")
        key = (parts[2], parts[3][:-len(".ndjson")]) if len(parts) == 4 and parts[1] == "full" else None
        if key not in bucket.objects:
            self.send_error(404)
            return
        name, data = key[1], bucket.objects[key]
        with bucket.lock:
            queued = faults.status.get(name)
            status = queued.pop(0) if queued else None
        if status:
            self.send_error(status)
            return
        etag = '"%s"' % hashlib.md5(data).hexdigest()
        start = 0
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and not faults.ignore_range and (if_range is None or if_range == etag):
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        extra = faults.unbounded_body.get(name) if body else None
        if extra is None:
            self.send_header("Content-Length", faults.length_header.get(name, str(len(data) - start)))
        else:
            self.close_connection = True
        self.send_header("ETag", etag)
        if faults.hashes:
            self.send_header("x-goog-hash", goog_hash(data, faults.hashes))
        self.end_headers()
        if body:
            self._body(name, data, start)
            if extra:
                self._send(name, extra)
        elif name in faults.replace_after_head:
            with bucket.lock:
                bucket.objects[key] = faults.replace_after_head.pop(name)

    def _body(self, name: str, data: bytes, start: int) -> None:
        faults, bucket = self.server.faults, self.server
        with bucket.lock:
            if faults.corrupt.get(name):
                faults.corrupt[name] -= 1
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1:]
            cut = faults.drop_at.pop(name, None) if faults.drop_at.get(name, -1) > start else None
            stall = faults.stall_at.pop(name, None) if faults.stall_at.get(name, (-1,))[0] > start else None
            trickle = faults.trickle_at.pop(name, None) if faults.trickle_at.get(name, (-1,))[0] > start else None
        stop = cut or (stall or trickle or (len(data),))[0]
        for offset in range(start, stop, 4096):
            if not self._send(name, data[offset:min(offset + 4096, stop)]):
                return
            time.sleep(faults.chunk_delay)
        if trickle:
            deadline = time.monotonic() + 6
            for offset in range(stop, len(data)):
                if time.monotonic() > deadline or not self._send(name, data[offset:offset + 1]):
                    break
                time.sleep(trickle[1])
        elif stall:
            time.sleep(stall[1])
        if cut or stall or trickle:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, name: str, block: bytes) -> bool:
        try:
            self.wfile.write(block)
            self.wfile.flush()
        except OSError:
            return False
        with self.server.lock:
            self.server.body_bytes[name] = self.server.body_bytes.get(name, 0) + len(block)
        return True


@contextlib.contextmanager
def serving(objects: dict[str, bytes], data_format: str = "simplified") -> Iterator[Bucket]:
    """A ``Bucket`` serving ``objects`` under ``/full/<format>/<class>.ndjson``."""
    bucket = Bucket({(data_format, name): data for name, data in objects.items()})
    thread = threading.Thread(target=bucket.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield bucket
    finally:
        bucket.shutdown()
        bucket.server_close()


def download_worker(index: int, argv: list[str]) -> int:
    """One of the racing downloaders (run in its own process)."""
    from pipeline import download
    return download.main(argv)
