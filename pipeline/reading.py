"""Stage 1 of the pipeline, ``ReadDrawings``: per unit of input (files or
byte ranges of about equal size), validate every line, keep each class's
lowest-ranked candidates, spill them to a file of the work folder and their
ranks to another, and emit where each planning task's ranks lie, the spill's
path and the counts. A worker holds at most one unit of input, and of it only
the candidates a class can still use."""
from __future__ import annotations

import collections
import logging
import pickle
import threading

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ndjson_format import Limits, Reject, check_line, file_class
from pipeline import console, sources
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.atomic_files import write_atomically
from pipeline.planning import plan_group
from pipeline.rejects import REJECT_PARTS, RejectsPart, reject_record

# The read step's tagged outputs (EncodeSpills emits counts under COUNTS too).
COUNTS, SPILLS, LINES = "counts", "spills", "lines"


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
        rejects = RejectsPart(FileSystems.join(self._work_dir, "rejects-read-%06d" % number))
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
                            rejects.add(r.path, r.start, lines, written, reject_record(reject.reason, line))
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
