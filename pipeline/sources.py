"""Reading the input files in pieces of bounded size, and noticing damage.

A plain file is cut into byte ranges, so that no file is a single indivisible
unit of work: a line belongs to the range that holds its first byte. A gzip
file cannot be entered in the middle (the format has no sync points), so it
is always read whole, by one worker; split a large ``.gz`` file (or store it
uncompressed) to spread it over workers.

Small files and ranges are packed together into units of roughly equal size,
each read by one worker. Which unit a line lands in changes nothing in the
output: a drawing's rank and its position in the output depend on its content
and the seed only.

Damage ends the reading of a file and is reported, never raised: a gzip stream
cut short (an interrupted download), corrupt compressed data, a file that
cannot be opened or read, a directory where a file was expected, anything
else that is not a regular file (a FIFO, a device such as /dev/zero: found
before it is opened, ``local_files``). The complete lines read before
the damage are used like any other; the partial line at the cut, and
everything after it, are not read.
"""
from __future__ import annotations

import zlib
from typing import Iterator, NamedTuple

from apache_beam.io.filesystems import CompressionTypes, FileSystems

import local_files

CHUNK_BYTES = 1 << 20
MAX_UNIT_BYTES = 16 << 20
MIN_UNIT_BYTES = 4 << 20
UNITS_PER_JOB = 16

TRUNCATED_GZIP = "truncated_gzip"
CORRUPT_GZIP = "corrupt_gzip"
IS_A_DIRECTORY = "is_a_directory"
NOT_A_REGULAR_FILE = "not_a_regular_file"
UNREADABLE = "unreadable"

DAMAGE_REASONS = {
    TRUNCATED_GZIP: "the gzip stream ends before its end marker (an interrupted download?)",
    CORRUPT_GZIP: "the compressed data is not valid gzip",
    IS_A_DIRECTORY: "a directory where an input file was expected",
    NOT_A_REGULAR_FILE: "a FIFO, device or socket where an input file was expected",
    UNREADABLE: "the file could not be opened or read",
}


class Range(NamedTuple):
    """Bytes ``[start, end)`` of file number ``file`` (its index in the sorted
    input list); ``end`` None: to the end of the file."""
    file: int
    path: str
    start: int
    end: int | None


class Damage(Exception):
    """A file that could not be read to its end; ``reason`` is in DAMAGE_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


def is_compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def file_sizes(files: list[str]) -> list[int | None]:
    """Sizes in bytes, None where unknown (the reading reports what is wrong)."""
    sizes: list[int | None] = []
    for path in files:
        try:
            found = FileSystems.match([path])[0].metadata_list
            sizes.append(found[0].size_in_bytes if found else None)
        except Exception:  # noqa: BLE001 - any filesystem error is reported when the file is read
            sizes.append(None)
    return sizes


def unit_bytes(total: int) -> int:
    """About UNITS_PER_JOB units for a small job, at most 16 MB each for a
    large one: beyond 256 MB of input a worker's memory stops growing."""
    return max(MIN_UNIT_BYTES, min(MAX_UNIT_BYTES, total // UNITS_PER_JOB))


def plan_units(files: list[str], sizes: list[int | None], target: int | None = None) -> list[list[Range]]:
    """Packs the files, cut into ranges of at most ``target`` bytes where they
    are plain, into units of about ``target`` bytes, in file order."""
    target = target or unit_bytes(sum(s or 0 for s in sizes))
    units: list[list[Range]] = []
    current: list[Range] = []
    filled = 0
    for index, (path, size) in enumerate(zip(files, sizes)):
        if size is None or is_compressed(path) or size <= target:
            pieces = [(Range(index, path, 0, None), size or 0)]
        else:
            pieces = [(Range(index, path, start, start + target if start + target < size else None),
                       min(target, size - start)) for start in range(0, size, target)]
        for piece, n in pieces:
            if current and filled + n > target:
                units.append(current)
                current, filled = [], 0
            current.append(piece)
            filled += n
    if current:
        units.append(current)
    return units


def is_local(path: str) -> bool:
    """True for a path of the local filesystem (not gs:// or another store)."""
    return FileSystems.get_scheme(path) is None


def _open(path: str):
    if is_local(path):
        try:
            return local_files.open_regular(path)
        except local_files.NotARegularFile as e:
            raise Damage(IS_A_DIRECTORY if e.is_directory else NOT_A_REGULAR_FILE, str(e)) from None
        except OSError as e:
            raise Damage(UNREADABLE, "%s: %s" % (type(e).__name__, e)) from None
    try:
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except IsADirectoryError as e:
        raise Damage(IS_A_DIRECTORY, str(e)) from None
    except Exception as e:  # noqa: BLE001 - any filesystem's error becomes a reported damage
        raise Damage(UNREADABLE, "%s: %s" % (type(e).__name__, e)) from None


def _read(f, n: int) -> bytes:
    try:
        return f.read(n)
    except IsADirectoryError as e:
        raise Damage(IS_A_DIRECTORY, str(e)) from None
    except Exception as e:  # noqa: BLE001
        raise Damage(UNREADABLE, "%s: %s" % (type(e).__name__, e)) from None


def _plain_chunks(f, start: int) -> Iterator[bytes]:
    if start:
        try:
            f.seek(start)
        except Exception as e:  # noqa: BLE001
            raise Damage(UNREADABLE, "%s: %s" % (type(e).__name__, e)) from None
    while True:
        chunk = _read(f, CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _gzip_chunks(f, path: str) -> Iterator[bytes]:
    """The decompressed bytes of every gzip member; raises Damage where the
    stream is cut short or corrupt (Beam's own reader stops silently at a cut)."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    in_member = False
    while True:
        raw = _read(f, CHUNK_BYTES)
        if not raw:
            break
        while raw:
            if not in_member and not raw.strip(b"\0"):
                raw = b""  # zero padding after the last member
                break
            in_member = True
            try:
                # At most CHUNK_BYTES out per call: a highly compressed line
                # (a gzip bomb) is never inflated whole.
                out = inflater.decompress(raw, CHUNK_BYTES)
            except zlib.error as e:
                raise Damage(CORRUPT_GZIP, "%s: %s" % (path, e)) from None
            if out:
                yield out
            if inflater.eof:
                raw = inflater.unused_data
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                in_member = False
            else:
                raw = inflater.unconsumed_tail
    if in_member:
        raise Damage(TRUNCATED_GZIP, "%s: the stream stops before its end" % path)


def read_lines(r: Range, cap: int = 0) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line without its newline) of every line that starts in
    the range; offsets are in the decompressed stream. A line longer than
    ``cap`` bytes (0: no cap) is cut to ``cap + 1`` bytes, so it is rejected as
    too long without ever being held whole. Raises Damage after the last
    complete line before the damage."""
    f = _open(r.path)
    try:
        if is_compressed(r.path):
            chunks = _gzip_chunks(f, r.path)
            offset, skip = 0, False
        else:
            offset = max(r.start - 1, 0)
            chunks = _plain_chunks(f, offset)
            skip = r.start > 0
        for offset, line in _split(chunks, offset, skip, cap):
            if r.end is not None and offset >= r.end:
                return
            yield offset, line
    finally:
        try:
            f.close()
        except Exception:  # noqa: BLE001 - nothing more to read from it
            pass


def _split(chunks, offset: int, skip: bool, cap: int) -> Iterator[tuple[int, bytes]]:
    """Lines of a byte stream starting at ``offset``. ``skip``: the first
    (partial) line belongs to the range before."""
    buf = b""
    long_start = -1  # offset of a line being skipped over for its length
    for chunk in chunks:
        if skip:
            i = chunk.find(b"\n")
            if i < 0:
                offset += len(chunk)
                continue
            offset += i + 1
            chunk = chunk[i + 1:]
            skip = False
        if long_start >= 0:
            i = chunk.find(b"\n")
            if i < 0:
                offset += len(chunk)
                continue
            yield long_start, buf
            offset += i + 1
            chunk = chunk[i + 1:]
            buf, long_start = b"", -1
        parts = (buf + chunk).split(b"\n")
        buf = parts.pop()
        for line in parts:
            yield offset, line
            offset += len(line) + 1
        if cap and len(buf) > cap:
            long_start = offset
            offset += len(buf)
            buf = buf[:cap + 1]
    if long_start >= 0:
        yield long_start, buf
    elif buf:
        yield offset, buf
