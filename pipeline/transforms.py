"""The Beam graph's building blocks, as named composite transforms."""
from __future__ import annotations

import collections
import logging
import pickle

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystems import CompressionTypes, FileSystems
from apache_beam.metrics import Metrics

import tfrecord_schema as schema
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.example import drawing_example
from pipeline.atomic_files import write_atomically, write_tfrecords
from pipeline.parse import Drawing, Reject, normalize_many, parse_drawing
from pipeline.raster import rasterize
from pipeline.tft_analysis import to_record_batch

REJECTS, COUNTS, TRAIN_ROWS = "rejects", "counts", "train_rows"
_NAMESPACE = "quickdraw"
_MAX_REJECT_TEXT = 100_000


def _lines(path: str):
    """(line number, bytes) of a plain or gzip file on any Beam filesystem."""
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        number = 0
        while True:
            line = f.readline()
            if not line:
                return
            number += 1
            yield number, line


class _ParseFile(beam.DoFn):
    """Parses every line of one file; keeps each class's best-ranked candidates."""

    def __init__(self, seed, wanted, max_points, max_bytes, recognized_only, classes):
        self._seed = seed
        self._wanted = wanted
        self._max_points = max_points
        self._max_bytes = max_bytes
        self._recognized_only = recognized_only
        self._classes = frozenset(classes) if classes else None
        self._read = Metrics.counter(_NAMESPACE, "lines_read")
        self._valid = Metrics.counter(_NAMESPACE, "drawings_valid")
        self._filtered = Metrics.counter(_NAMESPACE, "drawings_filtered")

    def process(self, path):
        counts = collections.Counter()
        candidates = collections.defaultdict(list)
        prune_at = 2 * self._wanted + 1000
        for number, line in _lines(path):
            self._read.inc()
            try:
                drawing = parse_drawing(line, self._max_points, self._max_bytes)
            except Reject as reject:
                counts[(reject.word, stats_lib.READ)] += 1
                counts[(reject.word, stats_lib.REJECTED + reject.reason)] += 1
                Metrics.counter(_NAMESPACE, "rejected_" + reject.reason).inc()
                yield beam.pvalue.TaggedOutput(REJECTS, _reject_record(path, number, reject, line))
                continue
            word = drawing.word
            counts[(word, stats_lib.READ)] += 1
            if (self._recognized_only and not drawing.recognized) or (
                    self._classes is not None and word not in self._classes):
                counts[(word, stats_lib.FILTERED)] += 1
                self._filtered.inc()
                continue
            counts[(word, stats_lib.VALID)] += 1
            self._valid.inc()
            rank = split_lib.rank_key(self._seed, drawing.key_id, path, number, line)
            bucket = candidates[word]
            bucket.append((rank, _pack(drawing)))
            if len(bucket) >= prune_at:
                candidates[word] = split_lib.keep_lowest(bucket, self._wanted)
        for word, bucket in candidates.items():
            yield word, _blob(split_lib.keep_lowest(bucket, self._wanted))
        lines = sum(n for (_, f), n in counts.items() if f == stats_lib.READ)
        rejected = sum(n for (_, f), n in counts.items() if f.startswith(stats_lib.REJECTED))
        logging.info("Read %s: %d lines, %d rejected", path, lines, rejected)
        yield beam.pvalue.TaggedOutput(COUNTS, dict(counts))


def _blob(items: list) -> bytes:
    """Lists cross stage boundaries as one pickled blob: the runner then moves
    bytes instead of decoding and re-encoding every drawing."""
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def _unblob(blobs) -> list:
    return [item for blob in blobs for item in pickle.loads(blob)]


def _pack(d: Drawing) -> tuple:
    """A Drawing as a tuple of primitives, which Beam encodes without pickling."""
    return d.word, d.key_id, d.countrycode, d.recognized, d.timestamp, d.points.tobytes()


def _unpack(t: tuple) -> Drawing:
    return Drawing(*t[:5], points=np.frombuffer(t[5], dtype=np.float32).reshape(-1, 3))


def _reject_record(path: str, number: int, reject: Reject, line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    record = {"file": path, "line": number, "reason": reject.reason, "text": text[:_MAX_REJECT_TEXT]}
    if len(text) > _MAX_REJECT_TEXT:
        record["truncated"] = True
    return orjson.dumps(record).decode("utf-8")


class ReadDrawings(beam.PTransform):
    """Input files -> ``(class, blob of [(rank, drawing), ...])`` candidates, plus the
    rejects (ndjson lines) and partial counts as tagged outputs."""

    def __init__(self, files: list[str], seed: int, wanted: int, max_points: int,
                 max_bytes: int, recognized_only: bool, classes: list[str] | None):
        super().__init__()
        self._files = files
        self._parse = _ParseFile(seed, wanted, max_points, max_bytes, recognized_only, classes)

    def expand(self, pbegin):
        return (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Parse" >> beam.ParDo(self._parse).with_outputs(REJECTS, COUNTS, main="candidates"))


class _EncodeClass(beam.DoFn):
    """One class's selection -> encoded examples grouped by output shard."""

    def __init__(self, quota: split_lib.Quota, seed: int, shards: int, raster: bool, analyze: bool):
        self._quota = quota
        self._seed = seed
        self._shards = shards
        self._raster = raster
        self._analyze = analyze

    def process(self, element, classes):
        word, ranked = element
        class_index = classes.index(word)
        by_shard = collections.defaultdict(list)
        counts = collections.Counter()
        train_rows = []
        assigned = [(split, rank, _unpack(packed)) for split, (rank, packed) in self._quota.assign(ranked)]
        inks = normalize_many([d.points for _, _, d in assigned])
        for (split, rank, d), ink in zip(assigned, inks):
            counts[(word, stats_lib.SELECTED + split)] += 1
            img = None
            if self._raster:
                img = rasterize(_strokes(d.points))
            record = drawing_example(ink, class_index, d.word, d.key_id,
                                     d.countrycode, d.recognized, d.timestamp, img)
            order = split_lib.shuffle_key(self._seed, rank)
            by_shard[(split, order % self._shards)].append((order, rank, record))
            if split == schema.TRAIN and self._analyze:
                train_rows.append((d.word, d.points))
        for key, records in by_shard.items():
            yield key, _blob(records)
        yield beam.pvalue.TaggedOutput(COUNTS, dict(counts))
        if train_rows:
            yield beam.pvalue.TaggedOutput(TRAIN_ROWS, to_record_batch(train_rows))


def _strokes(points):
    """Absolute points -> list of (x, y) arrays, one per stroke."""
    ends = np.flatnonzero(points[:, 2]) + 1
    return [(s[:, 0], s[:, 1]) for s in np.split(points, ends[:-1])]


def _keep_lowest(word: str, blobs, n: int = 0) -> tuple:
    return word, split_lib.keep_lowest(_unblob(blobs), n)


def _classes_with_drawings(counts: dict) -> list[str]:
    return [word for (word, field), n in counts.items() if field == stats_lib.VALID and n]


class SplitPerClass(beam.PTransform):
    """(candidates, read counts) -> per-class train/eval/test selection, encoded
    as ``((split, shard), blob of [(order, rank, example bytes)])``; also the
    sorted class list, selected counts and training rows for tf.Transform.

    The class list comes from the small counts rather than from the selection,
    so that selecting and encoding run as one stage over the candidates."""

    def __init__(self, quota: split_lib.Quota, seed: int, shards: int, raster: bool, analyze: bool):
        super().__init__()
        self._quota = quota
        self._encode = _EncodeClass(quota, seed, shards, raster, analyze)

    def expand(self, inputs):
        candidates, counts = inputs
        classes = (
            counts
            | "ClassNames" >> beam.FlatMap(_classes_with_drawings)
            | "AllClasses" >> beam.combiners.ToList()
            | "Sort" >> beam.Map(lambda names: sorted(set(names))))
        encoded = (
            candidates
            | "GroupByClass" >> beam.GroupByKey()
            | "KeepLowestPerClass" >> beam.MapTuple(_keep_lowest, n=self._quota.total)
            | "Encode" >> beam.ParDo(self._encode, beam.pvalue.AsSingleton(classes)).with_outputs(
                COUNTS, TRAIN_ROWS, main="shards"))
        return encoded.shards, classes, encoded[COUNTS], encoded[TRAIN_ROWS]


class WriteShards(beam.PTransform):
    """Writes each (split, shard) as one TFRecord file, records in shuffled
    order, atomically; every expected shard exists even if empty."""

    def __init__(self, output: str, quota: split_lib.Quota, shards: int):
        super().__init__()
        self._output = output
        self._keys = quota.shard_keys(shards)
        self._shards = shards

    def expand(self, keyed):
        empty = keyed.pipeline | "ExpectedShards" >> beam.Create([(k, _blob([])) for k in self._keys])
        return (
            (keyed, empty)
            | "Merge" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(self._write))

    def _write(self, key, blobs):
        split, shard = key
        records = sorted(_unblob(blobs))
        path = FileSystems.join(self._output, schema.shard_name(split, shard, self._shards))
        n = write_tfrecords(path, (r[2] for r in records))
        return split, path, n


class WriteClassFile(beam.PTransform):
    """``training.tfrecord.classes``: line number = class_index."""

    def __init__(self, output: str):
        super().__init__()
        self._path = FileSystems.join(output, schema.CLASSES_FILE)

    def expand(self, classes):
        return classes | "Write" >> beam.Map(
            lambda names: write_atomically(self._path, "".join(n + "\n" for n in names).encode("utf-8")))


class WriteStats(beam.PTransform):
    """Sums the partial counts and writes ``stats.json``."""

    def __init__(self, output: str):
        super().__init__()
        self._path = FileSystems.join(output, schema.STATS_FILE)

    def expand(self, counts):
        return (
            counts
            | "Sum" >> beam.CombineGlobally(stats_lib.SumCounts())
            | "Build" >> beam.Map(stats_lib.build_stats)
            | "Write" >> beam.Map(self._write))

    def _write(self, stats):
        write_atomically(self._path, stats_lib.to_json(stats))
        return stats


class WriteRejects(beam.PTransform):
    """``rejects-*.ndjson``: file, line, reason and the original text."""

    def __init__(self, output: str):
        super().__init__()
        self._prefix = FileSystems.join(output, schema.REJECTS_PREFIX)

    def expand(self, rejects):
        return rejects | "Write" >> beam.io.WriteToText(
            self._prefix, file_name_suffix=schema.REJECTS_SUFFIX)
