"""How the pipeline's stages size up for a given input, before running it.

From the input (drawings, class files and their sizes) and the options, the
model computes what each stage does: how many tasks (the unit of work a
runner schedules on one core), what they read and write in all, and the
slowest task. It uses the pipeline's own planning code (``sources.plan_units``,
``planning.plan_group``, the merge loop of ``WriteShards``) and sizes
measured on the real drawings of ``data/real_sample`` (bytes of ndjson per
drawing, points per drawing, bytes of an encoded record), so it follows the
code as it changes.

    python benchmarks/sizing.py                   # the full dataset: 50M drawings, 32 workers
    python benchmarks/sizing.py --drawings=5000000 --output_shards=20
    python benchmarks/sizing.py --check           # the model against a small local run

``--check`` runs the pipeline on the real sample with units and merges made
small (so that a few MB give many of each), counts the tasks of every stage
from the files they write and the calls they get, and compares them with the
model's figures for the same input.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import math
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tfrecord_schema as schema  # noqa: E402
from dataset_categories import CATEGORIES  # noqa: E402
from ndjson_format import Drawing, check_line  # noqa: E402
from pipeline import planning, sources, writing  # noqa: E402
from pipeline.example import drawing_example  # noqa: E402
from pipeline.parse import normalize_many  # noqa: E402

REAL_SAMPLE = REPO / "data" / "real_sample"
RANK_BYTES = 32          # one rank in a rank file (split.rank_array: 4 uint64)
TFRECORD_FRAMING = 16    # length, its CRC, the record's CRC
RUN_FRAMING = 12         # shuffle order and length in a run file (run_files.FRAME)
SPILL_OVERHEAD = 120     # the pickled tuple around a candidate's points: key_id, country, time, position


@dataclasses.dataclass(frozen=True)
class Sample:
    """Sizes measured on real drawings."""
    line_bytes: float
    points: float
    record_bytes: float

    @classmethod
    def measure(cls, folder: Path = REAL_SAMPLE) -> "Sample":
        lines = [line for path in sorted(glob.glob(str(folder / "*.ndjson")))
                 for line in Path(path).read_bytes().splitlines()]
        drawings = [d for d in (check_line(line) for line in lines) if isinstance(d, Drawing)]
        inks = normalize_many([d.points for d in drawings])
        records = [drawing_example(ink, 0, d.word, d.key_id, d.countrycode, d.recognized, d.timestamp, None)
                   for d, ink in zip(drawings, inks)]
        return cls(line_bytes=sum(len(line) + 1 for line in lines) / len(lines),
                   points=sum(len(d.points) for d in drawings) / len(drawings),
                   record_bytes=sum(len(r) for r in records) / len(records))


@dataclasses.dataclass
class Stage:
    name: str
    tasks: int
    reads: float          # bytes, all tasks
    writes: float         # bytes, all tasks
    slowest: str          # what the slowest task does
    slowest_bytes: float  # what it reads and writes
    merges: int = 0       # intermediate merge files (WriteShards)


def merge_plan(sections: int, fan_in: int) -> tuple[list[int], int]:
    """``WriteShards``' merge loop for ``sections`` equal sections: the sizes
    (in sections) of the intermediate merge files, and the files the final
    merge opens."""
    pending = [1] * sections
    merges = []
    while len(pending) > fan_in:
        group = min(fan_in, len(pending) - fan_in + 1)
        merged = sum(pending[:group])
        merges.append(merged)
        pending = pending[group:] + [merged]
    return merges, len(pending)


def model(drawings: int, classes: list[str], quota: tuple[int, int, int], shards: int,
          sample: Sample, file_sizes: list[int] | None = None, fan_in: int = writing.FAN_IN,
          unit_target: int | None = None) -> list[Stage]:
    """The stages of a run over ``drawings`` spread evenly over one file per
    class (or over files of ``file_sizes`` bytes, in class order)."""
    per_class = drawings / len(classes)
    sizes = file_sizes or [round(per_class * sample.line_bytes)] * len(classes)
    files = ["%s.ndjson" % c for c in classes]
    units = sources.plan_units(files, sizes, unit_target)
    wanted = sum(quota)
    splits = [s for s, n in zip(schema.SPLITS, quota) if n]
    drawings_of = {c: size / sample.line_bytes for c, size in zip(classes, sizes)}
    # Per unit and class: drawings read, candidates kept (at most ``wanted``).
    unit_reads, unit_kept = [], []
    for unit in units:
        read = collections.Counter()
        for r in unit:
            end = sizes[r.file] if r.end is None else r.end
            read[classes[r.file]] += (end - r.start) / sample.line_bytes
        unit_reads.append(read)
        unit_kept.append({c: min(n, wanted) for c, n in read.items()})
    spill_item = sample.points * 12 + SPILL_OVERHEAD
    frame = sample.record_bytes + RUN_FRAMING
    stages = []

    unit_bytes = [sum(r.values()) * sample.line_bytes for r in unit_reads]
    kept_total = sum(sum(k.values()) for k in unit_kept)
    biggest = max(range(len(units)), key=lambda u: unit_bytes[u])
    stages.append(Stage(
        "ReadDrawings", len(units), sum(unit_bytes), kept_total * (spill_item + RANK_BYTES),
        "a unit of %.1f MB: %d drawings parsed, %d candidates spilled" % (
            unit_bytes[biggest] / 1e6, sum(unit_reads[biggest].values()), sum(unit_kept[biggest].values())),
        unit_bytes[biggest] + sum(unit_kept[biggest].values()) * (spill_item + RANK_BYTES)))

    ranks_of = collections.Counter()
    for kept in unit_kept:
        for c, n in kept.items():
            ranks_of[planning.plan_group(c)] += n
    group, ranks = max(ranks_of.items(), key=lambda kv: kv[1])
    members = sum(1 for c in classes if planning.plan_group(c) == group)
    stages.append(Stage(
        "PlanClasses", len(ranks_of), kept_total * RANK_BYTES, 0,
        "planning task %d: %d classes, %d ranks from %d rank files" % (
            group, members, ranks, sum(1 for k in unit_kept if any(planning.plan_group(c) == group for c in k))),
        ranks * RANK_BYTES))

    # Selected drawings spread over a class's units in proportion to what they read.
    selected_of = {c: min(wanted, drawings_of[c]) for c in classes}
    unit_selected = [sum(selected_of[c] * n / drawings_of[c] for c, n in read.items()) for read in unit_reads]
    encode = [u for u, kept in enumerate(unit_kept) if kept]
    heaviest = max(encode, key=lambda u: unit_selected[u])
    stages.append(Stage(
        "EncodeSpills", len(encode), kept_total * spill_item, sum(unit_selected) * frame,
        "a spill: %d candidates read, %d records encoded" % (
            sum(unit_kept[heaviest].values()), unit_selected[heaviest]),
        sum(unit_kept[heaviest].values()) * spill_item + unit_selected[heaviest] * frame))

    # Every run file has a section for each (split, shard) it holds records of.
    records = {s: sum(min(n, max(0, drawings_of[c] - sum(quota[:i]))) for c in classes)
               for i, (s, n) in enumerate(zip(schema.SPLITS, quota)) if n}
    shard_tasks, reads, writes, worst, merge_files = 0, 0.0, 0.0, None, 0
    for split in splits:
        shard_bytes = records[split] / shards * frame
        sections = min(len(encode), math.ceil(records[split] / shards)) if records[split] else 0
        merges, opened = merge_plan(sections, fan_in)
        extra = sum(merges) / max(sections, 1) * shard_bytes
        task = (2 * shard_bytes + 2 * extra, split, shard_bytes, sections, len(merges), extra, opened)
        shard_tasks += shards
        merge_files += shards * len(merges)
        reads += shards * (shard_bytes + extra)
        writes += shards * (shard_bytes - records[split] / shards * (RUN_FRAMING - TFRECORD_FRAMING) + extra)
        worst = max(worst or task, task)
    _, split, shard_bytes, sections, merges, extra, opened = worst
    stages.append(Stage(
        "WriteShards", shard_tasks, reads, writes,
        "a %s shard of %.0f MB: %d sections, %d intermediate merges (%.0f MB more read and written), "
        "final merge of %d files" % (split, shard_bytes / 1e6, sections, merges, extra / 1e6, opened),
        worst[0], merge_files))
    return stages


def report(stages: list[Stage], workers: int, cores: int) -> str:
    lines = ["%-13s %7s %10s %10s  slowest task" % ("stage", "tasks", "read MB", "write MB")]
    for s in stages:
        lines.append("%-13s %7d %10.0f %10.0f  %s (%.0f MB in and out)" % (
            s.name, s.tasks, s.reads / 1e6, s.writes / 1e6, s.slowest, s.slowest_bytes / 1e6))
    lines.append("%d workers x %d cores = %d tasks at once" % (workers, cores, workers * cores))
    return "\n".join(lines)


# --- The model against a local run ---------------------------------------------

def observed_tasks(argv: list[str]) -> dict:
    """Runs the pipeline in this process and counts each stage's tasks: the
    units read (spill files), the planning tasks (calls), the spills encoded
    (run files), the intermediate merges and the shards written."""
    from apache_beam.io.filesystems import FileSystems

    from pipeline import run as run_lib
    written = collections.Counter()
    plans = []
    rename, plan = FileSystems.rename, planning._PlanTask.process  # pylint: disable=protected-access

    def counted_rename(sources_, destinations, *args, **kwargs):
        rename(sources_, destinations, *args, **kwargs)
        for path in destinations:
            name = path.rsplit("/", 1)[-1]
            written["shard" if ".tfrecord-" in name else name.split("-", 1)[0]] += 1

    def counted_plan(self, element, *args, **kwargs):
        plans.append(element[0])
        return plan(self, element, *args, **kwargs)

    FileSystems.rename = staticmethod(counted_rename)
    planning._PlanTask.process = counted_plan  # pylint: disable=protected-access
    try:
        stats = run_lib.run(argv)
    finally:
        FileSystems.rename = staticmethod(rename)
        planning._PlanTask.process = plan  # pylint: disable=protected-access
    return {"ReadDrawings": written["spill"], "PlanClasses": len(set(plans)),
            "EncodeSpills": written["run"], "merges": written["merge"], "WriteShards": written["shard"],
            "stats": stats}


def check(unit_target: int = 256 << 10, fan_in: int = 4, shards: int = 3) -> dict:
    """The model's task counts against a local run on the real sample, with
    ``unit_target``-byte units and a merge fan-in of ``fan_in``."""
    files = sorted(glob.glob(str(REAL_SAMPLE / "*.ndjson")))
    classes = [Path(f).stem for f in files]
    sizes = [os.path.getsize(f) for f in files]
    quota = (15, 5, 3)
    saved = sources.MIN_UNIT_BYTES, sources.MAX_UNIT_BYTES, writing.FAN_IN
    sources.MIN_UNIT_BYTES = sources.MAX_UNIT_BYTES = unit_target
    writing.FAN_IN = fan_in
    try:
        with tempfile.TemporaryDirectory() as out:
            seen = observed_tasks([
                "--input=%s" % REAL_SAMPLE, "--output=%s" % out, "--skip_transform",
                "--train_observations_per_class=%d" % quota[0], "--eval_observations_per_class=%d" % quota[1],
                "--test_observations_per_class=%d" % quota[2], "--output_shards=%d" % shards,
                "--direct_num_workers=1"])
        drawings = seen.pop("stats")["totals"]["read"]
        stages = model(drawings, classes, quota, shards, Sample.measure(), sizes, fan_in, unit_target)
    finally:
        sources.MIN_UNIT_BYTES, sources.MAX_UNIT_BYTES, writing.FAN_IN = saved
    predicted = {s.name: s.tasks for s in stages}
    predicted["merges"] = stages[-1].merges
    return {"predicted": predicted, "observed": seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drawings", type=int, default=50_000_000)
    parser.add_argument("--classes", type=int, default=len(CATEGORIES))
    parser.add_argument("--train_observations_per_class", type=int, default=10000)
    parser.add_argument("--eval_observations_per_class", type=int, default=1000)
    parser.add_argument("--test_observations_per_class", type=int, default=1000)
    parser.add_argument("--output_shards", type=int, default=32, help="as deploy/dataflow/launch.sh")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--cores", type=int, default=4, help="per worker (n2-standard-4)")
    parser.add_argument("--check", action="store_true", help="compare the model with a small local run")
    args = parser.parse_args()
    if args.check:
        print(json.dumps(check(), indent=1))
        return
    sample = Sample.measure()
    print("measured on data/real_sample: %.0f bytes of ndjson, %.1f points and a %.0f-byte record "
          "per drawing" % (sample.line_bytes, sample.points, sample.record_bytes))
    classes = sorted(CATEGORIES)[:args.classes]
    quota = (args.train_observations_per_class, args.eval_observations_per_class,
             args.test_observations_per_class)
    print(report(model(args.drawings, classes, quota, args.output_shards, sample), args.workers, args.cores))


if __name__ == "__main__":
    main()
