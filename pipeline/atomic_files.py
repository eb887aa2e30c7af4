"""The pipeline's own files on Beam's filesystems (local, gs://), never half-written.

What a run's workers write into its folder (shards, spills and rejects
streamed; classes, stats and the transform graph whole) goes to a temporary
sibling renamed into place (``created``, or ``temp_path`` and ``publish``). Its ``.tmp-`` names
are the ones a run sweeps from its folder before it starts and the manifest
refuses to seal. The folder's lock and manifest, which writers race for, go
through ``atomic_storage`` instead (exclusive create, compare-and-swap), whose
temporary names a sweep must not touch.
"""
from __future__ import annotations

import contextlib
import struct
import uuid
from typing import Iterator

import google_crc32c
from apache_beam.io.filesystems import FileSystems


def temp_path(path: str) -> str:
    """A unique sibling of ``path``; renaming it into place is the atomic step."""
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    return FileSystems.join(directory, ".tmp-%s-%s" % (uuid.uuid4().hex[:12], name))


def publish(tmp: str, path: str) -> None:
    """Moves a finished temp file onto its final name. The rename replaces an
    old file in one step (POSIX rename; an object store's copy over it), so
    readers see the old file or the new one, never none."""
    FileSystems.rename([tmp], [path])


@contextlib.contextmanager
def created(path: str) -> Iterator:
    """A file to write ``path`` through: a temporary sibling, renamed into
    place when the block ends without an error (left for the sweep if not)."""
    tmp = temp_path(path)
    with FileSystems.create(tmp) as f:
        yield f
    publish(tmp, path)


def write_atomically(path: str, data: bytes) -> None:
    with created(path) as f:
        f.write(data)


def _masked_crc32c(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(record: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc32c(length) + record + _masked_crc32c(record)
