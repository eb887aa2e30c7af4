"""Run files: the encoded drawings of one spill in the work folder, as
frames of (shuffle order, record) sorted by (split, shard, order), read back
a (split, shard) section at a time and merged into shards."""
from __future__ import annotations

import heapq
import struct

from apache_beam.io.filesystems import CompressionTypes, FileSystems

from pipeline.atomic_files import created

FRAME = struct.Struct(">QI")  # shuffle order, record length


def read_section(path: str, start: int, end: int):
    """(order, record) of a run file's section, read in bounded chunks."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(start)
        left = end - start
        buf = b""
        pos = 0
        while True:
            if len(buf) - pos < FRAME.size or len(buf) - pos < FRAME.size + FRAME.unpack_from(buf, pos)[1]:
                if not left:
                    break
                chunk = f.read(min(left, 1 << 18))
                if not chunk:
                    raise IOError("%s ends before its section does" % path)
                left -= len(chunk)
                buf = buf[pos:] + chunk
                pos = 0
                continue
            order, n = FRAME.unpack_from(buf, pos)
            pos += FRAME.size
            yield order, buf[pos:pos + n]
            pos += n
        if pos != len(buf):
            raise IOError("%s: a section ends inside a record" % path)


def merged(sections: list):
    return heapq.merge(*(read_section(*s) for s in sections))


def write_run(path: str, frames) -> tuple:
    size = 0
    with created(path) as f:
        for order, record in frames:
            frame = FRAME.pack(order, len(record)) + record
            f.write(frame)
            size += len(frame)
    return path, 0, size
