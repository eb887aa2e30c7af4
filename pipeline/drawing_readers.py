"""Drawings read back for looking at them: ndjson files, validated as the
pipeline validates them (plain or gzipped, simplified or raw format), and
TFRecords, whose ``ink`` deltas are turned back into strokes. The mosaic
(``quickdraw-render``) and the drawing page's held-out examples read them.

Only regular files are read (``local_files``); a damaged file counts
as ``damaged_file`` and is named on stderr. TensorFlow is imported only to
read TFRecords, so reading ndjson works without it.
"""
from __future__ import annotations

import collections
import contextlib
import glob
import gzip
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import command_line
import local_files
import tfrecord_schema as schema
from ndjson_format import NDJSON_SUFFIXES, Limits, Reject, check_line, file_class

Stroke = tuple[np.ndarray, np.ndarray]

NOT_RECOGNIZED = "not_recognized"  # skipped by --recognized_only, not a bad line
DAMAGED_FILE = "damaged_file"  # a file read up to a cut or corruption, or unreadable



class ReadError(command_line.UserError):
    """An input that cannot be listed or read at all; one line, exit code 2."""


@dataclass
class Drawing:
    word: str
    strokes: list[Stroke]


@dataclass
class Candidate:
    """One readable record that passed the filters; strokes are built lazily
    because most candidates are not picked."""
    word: str
    make_strokes: Callable[[], list[Stroke]]

    def to_drawing(self) -> Drawing:
        return Drawing(self.word, self.make_strokes())


# --- Input files -------------------------------------------------------------

def resolve_inputs(pattern: str) -> list[Path]:
    """The files ``pattern`` names: a file, a glob, or a directory (its ndjson
    files, else its TFRecord shards). A path the system refuses to look up
    (a name too long) is a ``ReadError``: ``Path.is_dir`` raises on it."""
    path = Path(pattern)
    try:
        is_dir = path.is_dir()
    except OSError as e:
        raise ReadError("--input %s: %s" % (command_line.one_line(pattern, 100),
                                              e.strerror or e)) from None
    if is_dir:
        # A pipeline's output folder is drawn from its shards: its rejects
        # files are ndjson too, but of rejected lines, not drawings.
        dataset = any((path / name).exists() for name in (schema.MANIFEST_FILE, schema.STATS_FILE))
        files = [] if dataset else [p for p in sorted(path.iterdir())
                                    if p.name.endswith(NDJSON_SUFFIXES)]
        if not files:
            files = [Path(p) for split in schema.SPLITS for p in sorted(glob.glob(
                os.path.join(glob.escape(str(path)), schema.shard_pattern(split))))]
    else:
        # Everything matched but folders not named like input files: a FIFO,
        # a device or a dangling link is reported when it is read. A path
        # that exists is itself, whatever its name holds ("run [1].ndjson").
        files = [Path(p) for p in local_files.glob(pattern) if not os.path.isdir(p) or p.endswith(NDJSON_SUFFIXES)]
    return [f for f in files if f.name != schema.CLASSES_FILE]


def is_ndjson(path: Path) -> bool:
    """By name, else by content: ndjson starts with ``{``, a TFRecord with a
    little-endian 64-bit length, whose high bytes are zero."""
    if path.name.endswith(NDJSON_SUFFIXES):
        return True
    try:
        with _open_binary(path) as f:
            head = f.read(64).lstrip()
    except (OSError, EOFError):
        return False
    return head.startswith(b"{") and b"\x00" not in head


@contextlib.contextmanager
def _open_binary(path: Path):
    """A regular file's bytes, decompressed when it is gzip (by content)."""
    with local_files.open_regular(str(path)) as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield f


def _regular(path: Path, rejects: collections.Counter) -> bool:
    """True for a regular file. Anything else (a FIFO, a device, a directory,
    a link to nothing) is a ``damaged_file``, found before any open that
    could block, and named on stderr."""
    try:
        local_files.check_regular(str(path))
    except OSError as e:
        _damaged(path, rejects, e)
        return False
    return True


def _damaged(path: Path, rejects: collections.Counter, error: Exception) -> None:
    rejects[DAMAGED_FILE] += 1
    if isinstance(error, local_files.NotARegularFile):
        print("quickdraw-render: warning: %s is not read: it is %s, not a regular file" % (path, error.kind),
              file=sys.stderr)
    else:
        print("quickdraw-render: warning: %s is damaged, read up to the damage: %s" % (path, error),
              file=sys.stderr)


# --- ndjson ------------------------------------------------------------------

def points_to_strokes(points: np.ndarray) -> list[Stroke]:
    """Strokes from validated points (x, y, 1.0 on the last point of a stroke)."""
    ends = np.flatnonzero(points[:, 2]) + 1
    xy = points[:, :2].astype(np.float64)
    return [(s[:, 0], s[:, 1]) for s in np.split(xy, ends[:-1])]


def read_ndjson(path: Path, rejects: collections.Counter, recognized_only: bool,
                limits: Limits = Limits()) -> Iterator[Candidate]:
    """The drawings of one ndjson file, validated as the pipeline does
    (``ndjson_format``); other lines are counted in ``rejects`` by reason,
    blank lines skipped. A damaged file (a cut or corrupt gzip stream, a read
    error) is counted as ``damaged_file`` and named on stderr; as in the
    pipeline, the complete lines before the damage are used."""
    expected_word = file_class(str(path))
    try:
        with _open_binary(path) as f:
            for line in local_files.bounded_lines(f, limits.max_bytes):
                if not line.strip():
                    continue
                drawing = check_line(line, limits, expected_word)
                if isinstance(drawing, Reject):
                    rejects[drawing.reason] += 1
                    continue
                if recognized_only and not drawing.recognized:
                    rejects[NOT_RECOGNIZED] += 1
                    continue
                yield Candidate(drawing.word, lambda p=drawing.points: points_to_strokes(p))
    except (OSError, EOFError, zlib.error) as e:
        _damaged(path, rejects, e)


# --- TFRecords ---------------------------------------------------------------

def ink_to_strokes(ink: np.ndarray) -> list[Stroke]:
    """Strokes from the pipeline's ``ink`` rows (dx, dy, end_of_stroke).

    Row ``i`` holds point ``i + 1`` relative to point ``i``; point 0 was dropped
    by ``parse_line``, so it is placed at (0, 0) and the drawing is exact up
    to that translation. A row with end_of_stroke = 1 ends its stroke.
    """
    ink = np.asarray(ink, dtype=np.float64).reshape(-1, schema.INK_CHANNELS)
    points = np.zeros((len(ink) + 1, 2))
    np.cumsum(ink[:, :2], axis=0, out=points[1:])
    ends = np.flatnonzero(ink[:, 2] > 0.5) + 2  # exclusive end, in points
    bounds = [0] + [int(e) for e in ends if e < len(points)] + [len(points)]
    return [(points[a:b, 0], points[a:b, 1])
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _read_classes(records_dir: Path) -> list[str] | None:
    path = records_dir / schema.CLASSES_FILE
    if not path.is_file():
        return None
    try:
        return schema.parse_classes(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ReadError("classes file %s: %s" % (path, e)) from None


def _ink_from_example(feature) -> np.ndarray:
    values = np.asarray(feature[schema.INK].float_list.value, dtype=np.float32)
    if schema.SHAPE in feature:
        shape = tuple(feature[schema.SHAPE].int64_list.value)
        if len(shape) != 2 or shape[1] != schema.INK_CHANNELS \
                or shape[0] * shape[1] != values.size:
            raise ValueError("shape does not match ink")
    if values.size == 0 or values.size % schema.INK_CHANNELS:
        raise ValueError("ink is empty or not a multiple of 3")
    return values.reshape(-1, schema.INK_CHANNELS)


def read_tfrecords(path: Path, rejects: collections.Counter,
                   recognized_only: bool) -> Iterator[Candidate]:
    """The drawings of one TFRecord file of ``tf.train.Example``; the class is
    ``word``, else ``class_index`` in the classes file beside the records."""
    import tensorflow as tf  # only TFRecord input needs it

    classes = _read_classes(path.parent)
    compression = "GZIP" if path.name.endswith(".gz") else ""
    try:
        for serialized in tf.data.TFRecordDataset(
                str(path), compression_type=compression).as_numpy_iterator():
            try:
                feature = tf.train.Example.FromString(serialized).features.feature
            except Exception:  # protobuf's DecodeError has no stable import path
                rejects["not a tf.train.Example"] += 1
                continue
            if schema.INK not in feature:
                rejects["no ink feature"] += 1
                continue
            if recognized_only and (
                    schema.RECOGNIZED not in feature
                    or list(feature[schema.RECOGNIZED].int64_list.value) != [1]):
                rejects[NOT_RECOGNIZED] += 1
                continue
            word = _word_of(feature, classes)
            if word is None:
                rejects["no word, and class_index not in %s" % schema.CLASSES_FILE] += 1
                continue
            try:
                ink = _ink_from_example(feature)
            except ValueError as e:
                rejects[str(e)] += 1
                continue
            yield Candidate(word, lambda ink=ink: ink_to_strokes(ink))
    except tf.errors.OpError as e:
        raise ReadError("cannot read %s as TFRecords: %s"
                          % (path, e.message.splitlines()[0])) from None


def _word_of(feature, classes: list[str] | None) -> str | None:
    if schema.WORD in feature and feature[schema.WORD].bytes_list.value:
        return feature[schema.WORD].bytes_list.value[0].decode("utf-8", "replace")
    if schema.CLASS_INDEX in feature and classes is not None:
        index = list(feature[schema.CLASS_INDEX].int64_list.value)
        if len(index) == 1 and 0 <= index[0] < len(classes):
            return classes[index[0]]
    return None


def read_drawings(files: list[Path], rejects: collections.Counter, recognized_only: bool,
                  limits: Limits) -> Iterator[Candidate]:
    """The drawings of ``files``, ndjson or TFRecords (told by name, else by
    content); what is skipped is counted in ``rejects`` by reason."""
    for path in files:
        if not _regular(path, rejects):
            continue
        if is_ndjson(path):
            yield from read_ndjson(path, rejects, recognized_only, limits)
        else:
            yield from read_tfrecords(path, rejects, recognized_only)
