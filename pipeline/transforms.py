"""The Beam graph's building blocks, as named composite transforms.

Only small metadata crosses stage boundaries; the drawings and their ranks
go through files that the workers write under a temporary folder of the
output (any Beam filesystem), so what a runner holds does not grow with the
selection, and a worker holds at most one unit of input:

1. ``ReadDrawings``: per unit of input (files or byte ranges of about equal
   size), validate every line, keep each class's lowest-ranked candidates,
   spill them to a file and their ranks to another; emit where each planning
   task's ranks lie, the spill's path and the counts.
2. ``PlanClasses``: per planning task (a fixed group of classes), read the
   ranks of its classes and cut each class into the last rank of each split
   (and the copies to drop): a small side input.
3. ``EncodeSpills``: per spill, select by the plan, encode the Examples and
   write one run file sorted by (split, shard, shuffle order); emit where each
   (split, shard) section of it lies.
4. ``WriteShards``: per (split, shard), a streaming merge of its sections
   into the final shard, written atomically; then the temporary files go.
"""
from __future__ import annotations

import collections
import heapq
import logging
import pickle
import struct
import threading
import zlib

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystems import CompressionTypes, FileSystems
from apache_beam.metrics import Metrics

import tfrecord_schema as schema
from ndjson_format import Limits, Reject, check_line, file_class
from pipeline import console, counters, sources
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.atomic_files import publish, temp_path, tfrecord_frame, write_atomically
from pipeline.example import drawing_example
from pipeline.parse import normalize_many
from pipeline.raster import rasterize
from pipeline.tft_analysis import to_record_batch

REJECT_PARTS, COUNTS, TRAIN_ROWS, SPILLS, LINES = "reject_parts", "counts", "train_rows", "spills", "lines"
_MAX_REJECT_TEXT = 10_000  # x REJECTS_PER_FILE: at most about 10 MB of rejects per input file
_BATCH_ROWS = 8192
# Sections merged at once: each open file holds a read buffer (16 MB on gs://).
FAN_IN = 32
_FRAME = struct.Struct(">QI")  # shuffle order, record length
# Classes are planned in this many tasks; a unit's rank file has a section for each.
PLAN_GROUPS = 64


# --- 1. Reading ---------------------------------------------------------------

class _ReadUnit(beam.DoFn):
    """One unit of input -> the kept candidates of each class in a spill file."""

    def __init__(self, work_dir: str, seed: int, wanted: int, max_points: int, max_bytes: int,
                 recognized_only: bool, classes, warm_up: bool = False):
        self._warm_up = warm_up
        self._work_dir = work_dir
        self._seed = seed
        self._wanted = wanted
        self._max_bytes = max_bytes
        self._limits = Limits(max_points=max_points, max_bytes=max_bytes)
        self._recognized_only = recognized_only
        self._classes = frozenset(classes) if classes else None

    def setup(self):
        if self._warm_up:
            threading.Thread(target=_import_tensorflow, name="import-tensorflow", daemon=True).start()

    def process(self, element):
        number, ranges = element
        counts = collections.Counter()
        candidates = collections.defaultdict(_Candidates)
        prune_at = 2 * self._wanted + 1000
        rejects = _RejectsPart(FileSystems.join(self._work_dir, "rejects-read-%06d" % number))
        for r in ranges:
            lines = written = 0
            expected_word = file_class(r.path)
            try:
                for offset, line in sources.read_lines(r, self._max_bytes):
                    lines += 1
                    d = check_line(line, self._limits, expected_word)
                    if isinstance(d, Reject):
                        reject = d
                        counts[(reject.word, stats_lib.READ)] += 1
                        counts[(reject.word, stats_lib.REJECTED + reject.reason)] += 1
                        if reject.reason == stats_lib.BLANK_LINE:
                            counts[(None, stats_lib.BLANK_LINES + r.path)] += 1
                            continue
                        counts[(None, stats_lib.REJECTED_LINES + r.path)] += 1
                        if written < stats_lib.REJECTS_PER_FILE:
                            rejects.add(r.path, r.start, lines, written, _reject(reject.reason, line))
                            written += 1
                        continue
                    word = d.word
                    counts[(word, stats_lib.READ)] += 1
                    if (self._recognized_only and not d.recognized) or (
                            self._classes is not None and word not in self._classes):
                        counts[(word, stats_lib.FILTERED)] += 1
                        continue
                    counts[(word, stats_lib.VALID)] += 1
                    rank = split_lib.rank_key(self._seed, d.key_id, r.file, offset, line)
                    bucket = candidates[word]
                    if bucket.add(rank, (d.key_id, d.countrycode, d.recognized, d.timestamp,
                                         d.points.tobytes(), r.start, lines)) >= prune_at:
                        bucket.prune(self._wanted)
            except sources.Damage as damage:
                logging.warning("Damaged input %s (%s): read %d lines before the damage",
                                r.path, damage.detail, lines)
                counts[(None, stats_lib.damaged_field(damage.reason, r.path))] += 1
            yield beam.pvalue.TaggedOutput(LINES, ((r.path, r.start), (lines, written)))
            console.range_done(r.path, lines, last=r.end is None)
        if rejects.close():
            yield beam.pvalue.TaggedOutput(REJECT_PARTS, rejects.path)
        kept = {word: bucket.spill(self._wanted) for word, bucket in candidates.items()}
        if kept:
            path = FileSystems.join(self._work_dir, "spill-%06d" % number)
            _write_file(path, pickle.dumps(sorted(kept.items()), protocol=pickle.HIGHEST_PROTOCOL))
            yield beam.pvalue.TaggedOutput(SPILLS, (number, path))
            yield from _write_ranks(FileSystems.join(self._work_dir, "ranks-%06d" % number), kept)
        yield beam.pvalue.TaggedOutput(COUNTS, dict(counts))


class _Candidates:
    """One class's candidates in one unit: the first copy of each drawing (a
    tuple led by its rank), and of its other copies in the unit the positions
    ``(file, range start, line in range)`` of the first COPIES_PER_DRAWING and
    a count per file of the rest. Only a first copy can be selected, so the
    others are never held: a unit of a million copies of one line holds one."""

    def __init__(self):
        self.items: list = []
        self._copies: dict = {}

    def add(self, rank: tuple, payload: tuple) -> int:
        """Adds a drawing; returns the number of first copies held."""
        copies = self._copies.get(split_lib.identity(rank))
        if copies is None:
            self._copies[split_lib.identity(rank)] = ([], collections.Counter())
            self.items.append((rank,) + payload)
        elif len(copies[0]) < stats_lib.COPIES_PER_DRAWING:
            copies[0].append((rank[2], payload[-2], payload[-1]))
        else:
            copies[1][rank[2]] += 1
        return len(self.items)

    def prune(self, n: int) -> None:
        """Keeps the ``n`` lowest-ranked drawings. A later copy of a drawing
        dropped here comes back as a first copy, and is dropped again: lower
        ranks fill the ``n`` places."""
        self.items = split_lib.keep_lowest(self.items, n)
        self._copies = {split_lib.identity(item[0]): self._copies[split_lib.identity(item[0])]
                        for item in self.items}

    def spill(self, n: int) -> list:
        """The ``n`` lowest-ranked drawings as spill items: the first copy's
        fields, then the positions and the per-file counts of the other copies."""
        self.prune(n)
        out = []
        for item in self.items:
            positions, rest = self._copies[split_lib.identity(item[0])]
            out.append(item + (tuple(positions), tuple(sorted(rest.items()))))
        return out


class _RejectsPart:
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


def plan_group(word: str) -> int:
    """The planning task of a class (see ``PlanClasses``): fixed by its name."""
    return zlib.crc32(word.encode("utf-8")) % PLAN_GROUPS


def _write_ranks(path: str, kept: dict):
    """Writes the kept ranks of a unit, class after class in the order of
    their planning tasks, as uint64 rows; yields each task's section
    ``(task, (path, start, end, ((class, rows), ...)))``."""
    words = sorted(kept, key=lambda w: (plan_group(w), w))
    parts, sections, at = [], {}, 0
    for word in words:
        data = split_lib.rank_array([item[0] for item in kept[word]]).tobytes()
        parts.append(data)
        start, _, index = sections.get(plan_group(word), (at, at, []))
        index.append((word, len(kept[word])))
        at += len(data)
        sections[plan_group(word)] = (start, at, index)
    _write_file(path, b"".join(parts))
    for group, (start, end, index) in sections.items():
        yield group, (path, start, end, tuple(index))


def _import_tensorflow() -> None:
    """Loads tf.Transform while this worker reads: the analysis stage that
    follows needs it, and loading it there (seconds per worker process) would
    leave the worker's core idle in between."""
    try:
        import tensorflow_transform.beam  # noqa: F401
    except Exception:  # noqa: BLE001 - the analysis stage reports it if it matters
        logging.debug("tf.Transform could not be loaded ahead of the analysis", exc_info=True)


def _write_file(path: str, data: bytes) -> None:
    """Temp name + rename: a retried bundle rewrites the same content."""
    write_atomically(path, data)


def _reject(reason: str, line: bytes) -> dict:
    """The record of a rejected line, its text cut at _MAX_REJECT_TEXT characters."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    record = {"reason": reason, "text": text[:_MAX_REJECT_TEXT]}
    if len(text) > _MAX_REJECT_TEXT:
        record["truncated"] = True
    return record


class ReadDrawings(beam.PTransform):
    """Units of input -> ``(planning task, section of a rank file)``; tagged outputs: the
    spill files ``(unit, path)``, the rejects part files, partial counts and, per
    range, its number of lines and of rejects written."""

    def __init__(self, units: list, work_dir: str, seed: int, wanted: int, max_points: int,
                 max_bytes: int, recognized_only: bool, classes: list[str] | None,
                 warm_up_transform: bool = False):
        super().__init__()
        self._units = list(enumerate(units))
        self._read = _ReadUnit(work_dir, seed, wanted, max_points, max_bytes, recognized_only, classes,
                               warm_up_transform)

    def expand(self, pbegin):
        return (
            pbegin
            | "Units" >> beam.Create(self._units)
            | "Read" >> beam.ParDo(self._read).with_outputs(REJECT_PARTS, COUNTS, SPILLS, LINES, main="ranks"))


# --- 2. Planning --------------------------------------------------------------

class _PlanTask(beam.DoFn):
    """One planning task: reads its section of every unit's rank file and
    plans each of its classes. Only the ranks of its own classes are in
    memory, and a class's are cut back to its lowest as they come in."""

    def __init__(self, quota: split_lib.Quota):
        self._quota = quota

    def process(self, element):
        _, sections = element
        wanted = self._quota.total
        ranks = collections.defaultdict(list)
        rows = collections.Counter()
        for path, start, end, index in sorted(sections):
            block = np.frombuffer(_read_bytes(path, start, end), dtype=np.uint64).reshape(
                -1, split_lib.RANK_FIELDS)
            at = 0
            for word, n in index:
                ranks[word].append(block[at:at + n])
                at += n
                rows[word] += n
                if rows[word] > 4 * wanted + 1000:
                    ranks[word] = [split_lib.lowest_ranks(np.concatenate(ranks[word]), wanted)]
                    rows[word] = len(ranks[word][0])
        for word in sorted(ranks):
            kept = split_lib.lowest_ranks(np.concatenate(ranks[word]), wanted)
            yield word, split_lib.plan_class([tuple(rank) for rank in kept.tolist()], self._quota)


def _read_bytes(path: str, start: int, end: int) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(start)
        data = f.read(end - start)
    if len(data) != end - start:
        raise IOError("%s ends before its section does" % path)
    return data


def _plan_counts(word: str, plan: split_lib.ClassPlan) -> dict:
    counts = {(word, stats_lib.SELECTED + s): n for s, n in plan.selected.items()}
    if plan.duplicates:
        counts[(word, stats_lib.REJECTED + stats_lib.DUPLICATE)] = plan.duplicates
    return counts


class PlanClasses(beam.PTransform):
    """Rank-file sections -> one dict ``{class: ClassPlan}`` (a small side
    input), and the selected and duplicate counts. Classes are planned in
    PLAN_GROUPS tasks, so the ranks themselves go through files, never
    through the runner or the shuffle."""

    def __init__(self, quota: split_lib.Quota):
        super().__init__()
        self._quota = quota

    def expand(self, sections):
        plans = (
            sections
            | "GroupByTask" >> beam.GroupByKey()
            | "Plan" >> beam.ParDo(_PlanTask(self._quota)))
        counts = plans | "Counts" >> beam.MapTuple(_plan_counts)
        return plans | "ToDict" >> beam.combiners.ToDict(), counts


# --- 3. Encoding ----------------------------------------------------------------

class _EncodeSpill(beam.DoFn):
    """One spill -> the selected drawings encoded into a run file, sorted by
    (split, shard, shuffle order, bytes); emits each (split, shard) section.
    The copies of selected drawings go to a rejects part file as duplicates."""

    def __init__(self, work_dir: str, seed: int, shards: int, raster: bool, analyze: bool,
                 files: list[str]):
        self._files = files
        self._work_dir = work_dir
        self._seed = seed
        self._shards = shards
        self._raster = raster
        self._analyze = analyze
        self._plans_id = None
        self._index: dict = {}

    def process(self, element, plans):
        number, spill = element
        if self._plans_id != id(plans):
            self._index = {word: i for i, word in enumerate(sorted(plans))}
            self._plans_id = id(plans)
        with FileSystems.open(spill, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            kept = pickle.loads(f.read())
        records = []
        train_rows = []
        copies = _RejectsPart(FileSystems.join(self._work_dir, "rejects-copies-%06d" % number))
        counts = collections.Counter()
        for word, items in kept:
            plan = plans[word]
            class_index = self._index[word]
            chosen = []
            for item in items:
                split = split_lib.split_of(item[0], plan)
                if split is not None:
                    chosen.append((split, item))
                elif item[0] in plan.dropped:
                    copies.add(*self._duplicate(item[1], (item[0][2], item[6], item[7])))
                if split is not None or item[0] in plan.dropped:
                    self._other_copies(word, item, copies, counts)
            points = [np.frombuffer(item[5], dtype=np.float32).reshape(-1, 3) for _, item in chosen]
            inks = normalize_many(points)
            for (split, item), p, ink in zip(chosen, points, inks):
                rank, key_id, countrycode, recognized, timestamp = item[:5]
                img = rasterize(_strokes(p)) if self._raster else None
                record = drawing_example(ink, class_index, word, key_id, countrycode, recognized,
                                         timestamp, img)
                order = split_lib.shuffle_key(self._seed, rank)
                records.append((schema.SPLITS.index(split), order % self._shards, order, record))
                if split == schema.TRAIN and self._analyze:
                    train_rows.append((word, p))
        del kept
        if copies.close():
            yield beam.pvalue.TaggedOutput(REJECT_PARTS, copies.path)
        if counts:
            yield beam.pvalue.TaggedOutput(COUNTS, dict(counts))
        for start in range(0, len(train_rows), _BATCH_ROWS):
            yield beam.pvalue.TaggedOutput(TRAIN_ROWS, to_record_batch(train_rows[start:start + _BATCH_ROWS]))
        if not records:
            return
        records.sort()
        path = FileSystems.join(self._work_dir, "run-%06d" % number)
        sections = []
        tmp = temp_path(path)
        with FileSystems.create(tmp) as f:
            written = 0
            key, begin = None, 0
            for split_index, shard, order, record in records:
                if (split_index, shard) != key:
                    if key is not None:
                        sections.append((key, begin, written))
                    key, begin = (split_index, shard), written
                frame = _FRAME.pack(order, len(record)) + record
                f.write(frame)
                written += len(frame)
            sections.append((key, begin, written))
        publish(tmp, path)
        for (split_index, shard), begin, end in sections:
            yield (schema.SPLITS[split_index], shard), (path, begin, end)


    def _duplicate(self, key_id: str, position: tuple) -> tuple:
        """``_RejectsPart.add``'s arguments for a copy of a selected drawing at
        ``(file index, range start, line in range)``."""
        file, start, line = position
        return self._files[file], start, line, None, {"reason": stats_lib.DUPLICATE, "key_id": key_id}

    def _other_copies(self, word: str, item: tuple, copies: _RejectsPart, counts: collections.Counter):
        """The copies of a selected drawing that its unit held back (see
        ``_Candidates``): duplicates, the first few written, the rest counted."""
        positions, rest = item[8], item[9]
        for position in positions:
            copies.add(*self._duplicate(item[1], position))
        for file, n in rest:
            counts[(None, stats_lib.COPIES_LEFT_OUT + self._files[file])] += n
        if positions or rest:
            counts[(word, stats_lib.REJECTED + stats_lib.DUPLICATE)] += len(positions) + sum(n for _, n in rest)


def _strokes(points):
    """Absolute points -> list of (x, y) arrays, one per stroke."""
    ends = np.flatnonzero(points[:, 2]) + 1
    return [(s[:, 0], s[:, 1]) for s in np.split(points, ends[:-1])]


class EncodeSpills(beam.PTransform):
    """(spills, plans) -> ``((split, shard), (run file, start, end))`` sections,
    plus the class list, rejects part files of the dropped copies, training
    batches and the counts of copies."""

    def __init__(self, work_dir: str, seed: int, shards: int, raster: bool, analyze: bool,
                 files: list[str]):
        super().__init__()
        self._encode = _EncodeSpill(work_dir, seed, shards, raster, analyze, files)

    def expand(self, inputs):
        spills, plans = inputs
        classes = plans | "ClassNames" >> beam.Map(sorted)
        encoded = (
            spills
            | "Spread" >> beam.Reshuffle()
            | "Encode" >> beam.ParDo(self._encode, beam.pvalue.AsSingleton(plans)).with_outputs(
                REJECT_PARTS, TRAIN_ROWS, COUNTS, main="sections"))
        return encoded.sections, classes, encoded[REJECT_PARTS], encoded[TRAIN_ROWS], encoded[COUNTS]


# --- 4. Writing ---------------------------------------------------------------

def _read_section(path: str, start: int, end: int):
    """(order, record) of a run file's section, read in bounded chunks."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(start)
        left = end - start
        buf = b""
        pos = 0
        while True:
            if len(buf) - pos < _FRAME.size or len(buf) - pos < _FRAME.size + _FRAME.unpack_from(buf, pos)[1]:
                if not left:
                    break
                chunk = f.read(min(left, 1 << 18))
                if not chunk:
                    raise IOError("%s ends before its section does" % path)
                left -= len(chunk)
                buf = buf[pos:] + chunk
                pos = 0
                continue
            order, n = _FRAME.unpack_from(buf, pos)
            pos += _FRAME.size
            yield order, buf[pos:pos + n]
            pos += n
        if pos != len(buf):
            raise IOError("%s: a section ends inside a record" % path)


def _merged(sections: list):
    return heapq.merge(*(_read_section(*s) for s in sections))


class WriteShards(beam.PTransform):
    """Writes each (split, shard) as one TFRecord file, records in shuffled
    order, atomically; every expected shard exists even if empty."""

    def __init__(self, output: str, work_dir: str, quota: split_lib.Quota, shards: int):
        super().__init__()
        self._output = output
        self._work_dir = work_dir
        self._keys = quota.shard_keys(shards)
        self._shards = shards

    def expand(self, sections):
        empty = sections.pipeline | "ExpectedShards" >> beam.Create([(k, None) for k in self._keys])
        return (
            (sections, empty)
            | "Merge" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(self._write))

    def _write(self, key, found):
        split, shard = key
        sections = sorted(s for s in found if s is not None)
        level = 0
        while len(sections) > FAN_IN:
            # Too many files to hold open at once: merge just enough of them
            # first that the rest fit in one merge.
            group = min(FAN_IN, len(sections) - FAN_IN + 1)
            path = FileSystems.join(self._work_dir, "merge-%s-%05d-%06d" % (split, shard, level))
            sections = sections[group:] + [_write_run(path, _merged(sections[:group]))]
            level += 1
        path = FileSystems.join(self._output, schema.shard_name(split, shard, self._shards))
        tmp = temp_path(path)
        n = 0
        with FileSystems.create(tmp) as f:
            for _, record in _merged(sections):
                f.write(tfrecord_frame(record))
                n += 1
        publish(tmp, path)
        return split, path, n


def _write_run(path: str, frames) -> tuple:
    tmp = temp_path(path)
    size = 0
    with FileSystems.create(tmp) as f:
        for order, record in frames:
            frame = _FRAME.pack(order, len(record)) + record
            f.write(frame)
            size += len(frame)
    publish(tmp, path)
    return path, 0, size


class RemoveWorkFiles(beam.PTransform):
    """Deletes the temporary folder once every shard and the rejects file
    (which reads its part files there) are written."""

    def __init__(self, work_dir: str):
        super().__init__()
        self._work_dir = work_dir

    def expand(self, done):
        written, rejects = done
        return (
            written.pipeline
            | "Folder" >> beam.Create([self._work_dir])
            | "Delete" >> beam.Map(_delete_folder, beam.pvalue.AsList(written), beam.pvalue.AsList(rejects)))


def _delete_folder(folder: str, written, _) -> int:
    if FileSystems.exists(folder):
        FileSystems.delete([folder])
    return len(written)


class WriteClassFile(beam.PTransform):
    """``training.tfrecord.classes``: line number = class_index."""

    def __init__(self, output: str):
        super().__init__()
        self._path = FileSystems.join(output, schema.CLASSES_FILE)

    def expand(self, classes):
        return classes | "Write" >> beam.Map(
            lambda names: write_atomically(self._path, schema.format_classes(names)))


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


class _IncrementCounters(beam.DoFn):
    """Adds a dict of counts ``{counter name: n}`` to the run's Beam counters."""

    def __init__(self, to_counters):
        self._to_counters = to_counters
        self._counters: dict = {}

    def process(self, element):
        for name, n in self._to_counters(element).items():
            if name not in self._counters:
                self._counters[name] = Metrics.counter(counters.NAMESPACE, name)
            self._counters[name].inc(n)


class RecordCounters(beam.PTransform):
    """(partial counts, stats) -> the run's Beam counters (``pipeline.counters``):
    each partial count dict as it comes, so the UIs show the run's progress,
    and the damaged files once from the stats, where each counts once."""

    def expand(self, inputs):
        partial, stats = inputs
        return (
            partial | "Counts" >> beam.ParDo(_IncrementCounters(counters.increments)),
            stats | "DamagedFiles" >> beam.ParDo(_IncrementCounters(counters.damaged)))


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
    tmp = temp_path(path)
    n = 0
    with FileSystems.create(tmp) as out:
        for part in sorted(parts):
            with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                for raw in f:
                    file, start, local, index, record = orjson.loads(raw)
                    lines_before, written_before = before.get((file, start), (0, 0))
                    if index is not None and written_before + index >= stats_lib.REJECTS_PER_FILE:
                        continue
                    out.write(orjson.dumps(dict({"file": file, "line": lines_before + local}, **record)) + b"\n")
                    n += 1
    publish(tmp, path)
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
