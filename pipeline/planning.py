"""Stage 2 of the pipeline, ``PlanClasses``: per planning task (a fixed
group of classes), read the ranks of its classes from every unit's rank file
and cut each class into the last rank of each split (and the copies to
drop): a small side input for the encoding."""
from __future__ import annotations

import collections
import zlib

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import CompressionTypes, FileSystems

from pipeline import split as split_lib
from pipeline import stats as stats_lib

# Classes are planned in this many tasks; a unit's rank file has a section for each.
PLAN_GROUPS = 64


def plan_group(word: str) -> int:
    """The planning task of a class (see ``PlanClasses``): fixed by its name."""
    return zlib.crc32(word.encode("utf-8")) % PLAN_GROUPS


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
