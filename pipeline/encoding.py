"""Stage 3 of the pipeline, ``EncodeSpills``: per spill file, select the
drawings the plan keeps, encode their Examples and write one run file sorted
by (split, shard, shuffle order); emit where each (split, shard) section of
it lies, the training rows for tf.Transform, and the dropped copies."""
from __future__ import annotations

import collections
import pickle

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import CompressionTypes, FileSystems

import tfrecord_schema as schema
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.atomic_files import created
from pipeline.example import drawing_example
from pipeline.parse import normalize_many
from pipeline.raster import rasterize
from pipeline.reading import COUNTS
from pipeline.rejects import REJECT_PARTS, RejectsPart
from pipeline.run_files import FRAME
from pipeline.tft_analysis import to_record_batch

TRAIN_ROWS = "train_rows"
_BATCH_ROWS = 8192


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
        copies = RejectsPart(FileSystems.join(self._work_dir, "rejects-copies-%06d" % number))
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
        with created(path) as f:
            written = 0
            key, begin = None, 0
            for split_index, shard, order, record in records:
                if (split_index, shard) != key:
                    if key is not None:
                        sections.append((key, begin, written))
                    key, begin = (split_index, shard), written
                frame = FRAME.pack(order, len(record)) + record
                f.write(frame)
                written += len(frame)
            sections.append((key, begin, written))
        for (split_index, shard), begin, end in sections:
            yield (schema.SPLITS[split_index], shard), (path, begin, end)


    def _duplicate(self, key_id: str, position: tuple) -> tuple:
        """``RejectsPart.add``'s arguments for a copy of a selected drawing at
        ``(file index, range start, line in range)``."""
        file, start, line = position
        return self._files[file], start, line, None, {"reason": stats_lib.DUPLICATE, "key_id": key_id}

    def _other_copies(self, word: str, item: tuple, copies: RejectsPart, counts: collections.Counter):
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
