"""What identifies an object of the dataset's bucket, and whether a file is it.

The server's ``Content-Length`` gives the size and its ``x-goog-hash`` the
CRC-32C and MD5 (Cloud Storage sends both); a fetched file is checked
against the strongest of them it has (``ObjectInfo.check``), so that a
cut, a changed object or a corrupt copy is never renamed into place.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
from dataclasses import dataclass
from pathlib import Path

import google_crc32c


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


def object_info(response: http.client.HTTPResponse, size: int) -> ObjectInfo:
    digests = parse_goog_hash(response.headers.get_all("x-goog-hash") or [])
    return ObjectInfo(size, digests.get("crc32c"), digests.get("md5"), response.getheader("ETag"))


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
