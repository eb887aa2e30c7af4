"""Runs the pipeline: ``python -m pipeline.run --input=... --output=...``.

ndjson drawings -> parse_line -> per-class train/eval/test selection ->
shuffled, sharded TFRecords, with rejects, stats and the tf.Transform output.
Works on the DirectRunner, Dataflow and Flink alike (standard Beam options).
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import tfrecord_schema as schema
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.options import QuickDrawOptions
from pipeline.tft_analysis import AnalyzeTrainingSplit
from pipeline import sources
from pipeline.transforms import (COUNTS, LINES, REJECTS, SPILLS, EncodeSpills, PlanClasses, ReadDrawings,
                                 RemoveWorkFiles, WriteClassFile, WriteRejects, WriteShards, WriteStats)

WORK_DIR = ".tmp-work"  # the workers' spill and run files, removed at the end
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "sample")


class PipelineError(Exception):
    """A problem with the options or inputs, reported as one line."""


def read_classes(value: str | None) -> list[str] | None:
    """``--classes``: a comma-separated list, or a file with one name per line."""
    if not value:
        return None
    if FileSystems.exists(value) and not value.endswith("/"):
        with FileSystems.open(value) as f:
            names = [n.strip() for n in f.read().decode("utf-8").splitlines()]
    else:
        names = [n.strip() for n in value.split(",")]
    names = [n for n in names if n]
    if not names:
        raise PipelineError("--classes %r names no class" % value)
    return names


def match_inputs(pattern: str | None, classes: list[str] | None) -> list[str]:
    """Files to read. A folder means its ``*.ndjson`` and ``*.ndjson.gz``; when
    every requested class has its own ``<class>.ndjson[.gz]``, only those are read."""
    pattern = pattern or SAMPLE_DIR
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    expanded = []
    for p in patterns:
        is_glob = any(c in p for c in "*?[")
        if not is_glob and not p.endswith((".ndjson", ".gz", ".json")) and FileSystems.exists(p):
            base = p.rstrip("/")
            expanded += [FileSystems.join(base, "*.ndjson"), FileSystems.join(base, "*.ndjson.gz")]
        else:
            expanded.append(p)
    files = sorted({m.path for result in FileSystems.match(expanded) for m in result.metadata_list})
    if not files:
        raise PipelineError("no input file matches %r" % pattern)
    if classes:
        by_class = {re.sub(r"\.ndjson(\.gz)?$", "", os.path.basename(f)): f for f in files}
        if all(c in by_class for c in classes):
            files = sorted(by_class[c] for c in classes)
    return files


def build(p: beam.Pipeline, opts: QuickDrawOptions, quota: split_lib.Quota, files: list[str],
          classes, temp_dir: str):
    """Wires the composite transforms together (see ``pipeline.transforms``)."""
    analyze = not opts.skip_transform and quota.counts[schema.TRAIN] > 0
    work_dir = FileSystems.join(opts.output, WORK_DIR)
    units = sources.plan_units(files, sources.file_sizes(files))
    read = p | "ReadDrawings" >> ReadDrawings(
        units, work_dir, opts.seed, quota.total, opts.max_points, opts.max_bytes,
        opts.recognized_only, classes)
    plans, selected_counts = read.ranks | "PlanClasses" >> PlanClasses(quota)
    sections, class_names, duplicates, train_rows = (
        (read[SPILLS], plans)
        | "EncodeSpills" >> EncodeSpills(work_dir, opts.seed, opts.output_shards, opts.raster, analyze))
    written = sections | "WriteShards" >> WriteShards(opts.output, work_dir, quota, opts.output_shards)
    written | "RemoveWorkFiles" >> RemoveWorkFiles(work_dir)
    class_names | "WriteClassFile" >> WriteClassFile(opts.output)
    ((read[REJECTS], duplicates) | "AllRejects" >> beam.Flatten(), read[LINES]) | "WriteRejects" >> WriteRejects(
        opts.output, files)
    ((read[COUNTS], selected_counts) | "AllCounts" >> beam.Flatten()
     | "WriteStats" >> WriteStats(opts.output))
    if analyze:
        train_rows | "AnalyzeTrainingSplit" >> AnalyzeTrainingSplit(opts.output, temp_dir)


def remove_stale_outputs(output: str, quota: split_lib.Quota, shards: int) -> None:
    """Deletes shards left by an earlier run with another shard count or split."""
    keep = {FileSystems.join(output, schema.shard_name(s, i, shards)) for s, i in quota.shard_keys(shards)}
    patterns = [FileSystems.join(output, schema.shard_pattern(s)) for s in schema.SPLITS]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list if m.path not in keep]
    if stale:
        FileSystems.delete(stale)


def run(argv: list[str] | None = None) -> dict:
    """Runs the pipeline to completion and returns the contents of stats.json."""
    options = PipelineOptions(argv)
    opts = options.view_as(QuickDrawOptions)
    if opts.output_shards < 1:
        raise PipelineError("--output_shards must be at least 1")
    try:
        quota = split_lib.Quota(opts.train_observations_per_class, opts.eval_observations_per_class,
                                opts.test_observations_per_class)
    except ValueError as e:
        raise PipelineError(str(e)) from None
    if quota.total == 0:
        raise PipelineError("every --*_observations_per_class is 0: nothing to select")
    classes = read_classes(opts.classes)
    files = match_inputs(opts.input, classes)
    if not FileSystems.exists(opts.output):
        FileSystems.mkdirs(opts.output)
    temp_dir = FileSystems.join(opts.output, ".tmp-transform")
    logging.info("Reading %d files into %s", len(files), opts.output)
    with beam.Pipeline(options=options) as p:
        build(p, opts, quota, files, classes, temp_dir)
    remove_stale_outputs(opts.output, quota, opts.output_shards)
    if FileSystems.exists(temp_dir):
        FileSystems.delete([temp_dir])
    with FileSystems.open(FileSystems.join(opts.output, schema.STATS_FILE)) as f:
        stats = json.loads(f.read())
    print(stats_lib.summary(stats, opts.output, quota.total))
    if not sum(stats["totals"]["selected"].values()):
        raise PipelineError("no drawing was selected: see %s and the rejects" % schema.STATS_FILE)
    return stats


class _WorkerProgress(logging.Filter):
    """Beam's local runners forward a worker's log records as protobuf text.
    This keeps our own progress lines (as plain messages) and the warnings."""

    _MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        ours = "/pipeline/" in text
        if record.levelno < logging.WARNING and not ours:
            return False
        found = self._MESSAGE.search(text)
        if found:
            record.msg, record.args = "worker: " + found.group(1).replace('\\"', '"'), ()
        return True


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("apache_beam", "tensorflow", "absl", "tensorflow_transform", "tfx_bsl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    forwarded = logging.getLogger("apache_beam.runners.portability.local_job_service")
    forwarded.setLevel(logging.INFO)
    forwarded.addFilter(_WorkerProgress())
    try:
        run(argv if argv is not None else sys.argv[1:])
    except PipelineError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
