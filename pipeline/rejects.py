"""The rejects file: every line left out, with its file, line and reason.
Workers stream their rejects to part files of the work folder as they come;
``WriteRejects`` joins them, numbering each line within its file, so nothing
of it goes through the runner."""
from __future__ import annotations

import collections

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import CompressionTypes, FileSystems

import tfrecord_schema as schema
from pipeline import stats as stats_lib
from pipeline.atomic_files import created, publish, temp_path

# The tag of the outputs that name a part file (the read and encode steps').
REJECT_PARTS = "reject_parts"
_MAX_REJECT_TEXT = 10_000  # bytes of a rejected line's text, as written; x REJECTS_PER_FILE: about 10 MB a file


class RejectsPart:
    """A worker's rejects, streamed to a part file of the work folder as they
    come (``[file, range start, line in range, index among the range's
    rejects or None, record]`` per line), under a temporary name until closed."""

    def __init__(self, path: str):
        self.path = path
        self._tmp = None
        self._file = None

    def add(self, file: str, start: int, line: int, index: int | None, record: dict) -> None:
        if self._file is None:
            self._tmp = temp_path(self.path)
            self._file = FileSystems.create(self._tmp)
        self._file.write(orjson.dumps([file, start, line, index, record]) + b"\n")

    def close(self) -> bool:
        """Publishes the part; False if it holds nothing (no file)."""
        if self._file is None:
            return False
        self._file.close()
        publish(self._tmp, self.path)
        return True


def reject_record(reason: str, line: bytes) -> dict:
    """The record of a rejected line, its text cut to at most _MAX_REJECT_TEXT
    bytes as written: JSON escapes a control character in 6 bytes and writes
    an invalid UTF-8 byte as U+FFFD in 3, so a count of characters bounds nothing."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    cut = _json_prefix(text, _MAX_REJECT_TEXT)
    record = {"reason": reason, "text": cut}
    if len(cut) < len(text):
        record["truncated"] = True
    return record


def _json_prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose JSON string is at most ``limit``
    bytes, quotes left out (every character takes at least one byte)."""
    text = text[:limit]
    if len(orjson.dumps(text)) - 2 <= limit:
        return text
    low, high = 0, len(text)  # text[:low] fits, text[:high] does not
    while high - low > 1:
        mid = (low + high) // 2
        if len(orjson.dumps(text[:mid])) - 2 <= limit:
            low = mid
        else:
            high = mid
    return text[:low]


def _line_starts(lines: list) -> dict:
    """``{(path, range start): (lines, rejects written) of that file before the range}``."""
    by_path = collections.defaultdict(list)
    for (path, start), counts in lines:
        by_path[path].append((start, counts))
    before = {}
    for path, ranges in by_path.items():
        total = written = 0
        for start, (n, w) in sorted(ranges):
            before[(path, start)] = (total, written)
            total += n
            written += w
    return before


def _write_rejects(_, path: str, parts: list[str], before: dict) -> int:
    """Streams the part files into the rejects file: each line gets its
    file's line number (``before``: see ``_line_starts``), and of the lines
    rejected while reading a file only its first REJECTS_PER_FILE are kept (a
    range writes at most that many, not knowing how many the file's earlier
    ranges wrote). Returns the number written."""
    n = 0
    with created(path) as out:
        for part in sorted(parts):
            with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                for raw in f:
                    file, start, local, index, record = orjson.loads(raw)
                    lines_before, written_before = before.get((file, start), (0, 0))
                    if index is not None and written_before + index >= stats_lib.REJECTS_PER_FILE:
                        continue
                    out.write(orjson.dumps(dict({"file": file, "line": lines_before + local}, **record)) + b"\n")
                    n += 1
    return n


class WriteRejects(beam.PTransform):
    """``rejects-00000-of-00001.ndjson``: file, line, reason and the original
    text (a dropped copy of a drawing: its key_id instead of the text), from
    the workers' part files; nothing of it goes through the runner."""

    def __init__(self, output: str):
        super().__init__()
        self._path = FileSystems.join(output, schema.REJECTS_PREFIX + "-00000-of-00001" + schema.REJECTS_SUFFIX)

    def expand(self, inputs):
        parts, lines = inputs
        # The side input comes from a step of one output: Beam's bundle-based
        # DirectRunner gives a side input read from one of several tagged
        # outputs either nothing or the elements of every output.
        line_starts = lines | "LineStarts" >> beam.combiners.ToList() | "ByRange" >> beam.Map(_line_starts)
        return (
            parts.pipeline
            | "Once" >> beam.Create([None])
            | "Write" >> beam.Map(_write_rejects, self._path, beam.pvalue.AsList(parts),
                                  beam.pvalue.AsSingleton(line_starts)))
