"""Runs the pipeline: ``python -m pipeline.run --input=... --output=...``.

ndjson drawings -> parse_line -> per-class train/eval/test selection ->
shuffled, sharded TFRecords, with rejects, stats and the tf.Transform output.
Works on the DirectRunner, Dataflow and Flink alike (standard Beam options).

A run checks its options and folders before the job, locks the output folder,
invalidates its manifest and removes an earlier run's outputs, and writes the
manifest last (dataset_manifest.py): a folder is a complete dataset or refused.
A dry run (``--dry_run=True``) builds the job and leaves the folder as it is.
Exit status: 0 done, 2 a user error (one line on stderr), 1 anything else.
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and not {"-h", "--help", "--help_beam"} & set(sys.argv):
    # Beam and TensorFlow take many seconds to load: say at once that we started
    # (hence the imports below this line).
    # On stdout, like the summary: stderr holds only logs, and a user error's one line.
    print("Quick, Draw! pipeline: loading Apache Beam...", flush=True)

import argparse
import difflib
import json
import logging
import os
import shutil
import tempfile

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, GoogleCloudOptions, PipelineOptions,
                                                  StandardOptions, TestOptions)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.runners import DataflowRunner, DirectRunner, PipelineState, create_runner

import command_line
import dataset_manifest
import tfrecord_schema as schema
from ndjson_format import file_class
from pipeline import beam_internals, console, counters, inputs, local_files, output_folder, sources
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.options import QuickDrawOptions, help_parser
from pipeline.tft_analysis import AnalyzeTrainingSplit
from pipeline.transforms import (COUNTS, LINES, REJECT_PARTS, SPILLS, EncodeSpills, PlanClasses, ReadDrawings,
                                 RecordCounters, RemoveWorkFiles, WriteClassFile, WriteRejects, WriteShards,
                                 WriteStats)

WORK_DIR = ".tmp-work"  # the workers' spill and run files, removed at the end
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "sample")


class PipelineError(command_line.UserError):
    """A problem with the options or inputs, reported as one line."""


# A file of class names is read whole: 345 names take 4 kB, so this is room to spare.
MAX_CLASSES_FILE_BYTES = 1 << 20


def read_classes(value: str | None) -> list[str] | None:
    """``--classes``: a comma-separated list, or a file with one name per line."""
    if not value:
        return None
    if FileSystems.exists(value) and not value.endswith("/"):
        try:
            # a local FIFO would block the open and /dev/zero never end: regular files only
            opened = local_files.open_regular(value) if sources.is_local(value) \
                else FileSystems.open(value)
            with opened as f:
                data = f.read(MAX_CLASSES_FILE_BYTES + 1)
            if len(data) > MAX_CLASSES_FILE_BYTES:
                raise ValueError("more than %d bytes" % MAX_CLASSES_FILE_BYTES)
            names = schema.parse_classes(data)
        except (OSError, ValueError) as e:
            raise PipelineError("--classes=%s cannot be read as a file of class names: %s" % (
                quote(value, 200), " ".join(str(e).split())[:200])) from None
    else:
        names = [n.strip() for n in value.split(",")]
    names = [n for n in names if n]
    if not names:
        raise PipelineError("--classes=%s names no class" % quote(value))
    return names


def match_inputs(pattern: str | None, classes: list[str] | None, output: str) -> inputs.Matched:
    """Files to read, and the files pipeline runs wrote that the input also
    matches, which are left out (``pipeline.inputs``). A folder means its
    ``*.ndjson`` and ``*.ndjson.gz``. When every input file is a class file
    (``ndjson_format.file_class``), only the requested classes' files are
    read, and a requested class without a file is an error before the job starts."""
    patterns = [p.strip() for p in (SAMPLE_DIR if pattern is None else pattern).split(",")
                if p.strip()]
    if not patterns:  # an unset shell variable: the sample is read only when --input is absent
        raise PipelineError("--input=%r names no file, folder or glob" % pattern)
    expanded = []
    owner = []  # the pattern each expanded pattern comes from
    roots = []  # the folder each expanded pattern starts from
    for p in patterns:
        is_glob = any(c in p for c in "*?[")
        if not is_glob and not p.endswith((".ndjson", ".gz", ".json")) and FileSystems.exists(p):
            base = p.rstrip("/")
            expanded += [FileSystems.join(base, "*.ndjson"), FileSystems.join(base, "*.ndjson.gz")]
            owner += [p, p]
            roots += [base, base]
        else:
            expanded.append(p)
            owner.append(p)
            roots.append(inputs.pattern_root(p))
    try:
        found, skipped = inputs.match(expanded, roots, output)
    except Exception as e:  # an unreadable folder or a bucket that does not exist
        raise PipelineError("--input=%s cannot be listed: %s" % (pattern, " ".join(str(e).split())[:200])) from None
    matched = {p for p, paths in zip(owner, found) if paths}
    unmatched = [p for p in patterns if p not in matched]
    if unmatched and len(patterns) > 1:
        raise PipelineError("--input: %s matches no file%s" % (unmatched[0], _only_outputs(skipped)))
    files = sorted({f for paths in found for f in paths})
    if not files:
        raise PipelineError("--input=%s matches no file%s" % (pattern, _only_outputs(skipped)))
    for f in files:
        try:
            f.encode("utf-8")
        except UnicodeEncodeError:
            raise PipelineError("input file name %s is not valid UTF-8: rename the file" % ascii(f)) from None
    if classes:
        by_class = {file_class(f) for f in files}
        if None not in by_class:
            absent = [c for c in classes if c not in by_class]
            if absent:
                close = difflib.get_close_matches(absent[0], list(by_class), n=3)
                raise PipelineError("--classes: %s not in the input (no %s.ndjson[.gz] among its %d "
                                    "files)%s" % (quote_names(absent), quote(absent[0]), len(files),
                                                  "; closest: " + ", ".join(close) if close else ""))
            files = [f for f in files if file_class(f) in classes]
    return inputs.Matched(files, skipped)


def _only_outputs(skipped: list[str]) -> str:
    if not skipped:
        return ""
    return " but files pipeline runs write (%d, such as %s), which are never read" % (len(skipped), skipped[0])


def quote(value: str, limit: int = 30) -> str:
    """A value for a one-line error: printable, at most ``limit`` characters
    and a count of the rest."""
    text = value if value.isprintable() else ascii(value)[1:-1]
    return text if len(text) <= limit else "%s... (%d characters)" % (text[:limit], len(value))


def quote_names(names: list[str], most: int = 2) -> str:
    """The first few names, quoted, and how many more."""
    shown = ", ".join(quote(n) for n in names[:most])
    return shown + (" and %d more" % (len(names) - most) if len(names) > most else "")


def build(p: beam.Pipeline, opts: QuickDrawOptions, quota: split_lib.Quota, files: list[str],
          classes, temp_dir: str):
    """Wires the composite transforms together (see ``pipeline.transforms``);
    returns the outputs of the writing steps, which the manifest waits for."""
    analyze = not opts.skip_transform and quota.counts[schema.TRAIN] > 0
    work_dir = FileSystems.join(opts.output, WORK_DIR)
    units = sources.plan_units(files, sources.file_sizes(files))
    read = p | "ReadDrawings" >> ReadDrawings(
        units, work_dir, opts.seed, quota.total, opts.max_points, opts.max_bytes,
        opts.recognized_only, classes, warm_up_transform=analyze)
    plans, selected_counts = read.ranks | "PlanClasses" >> PlanClasses(quota)
    sections, class_names, copies, train_rows, copy_counts = (
        (read[SPILLS], plans)
        | "EncodeSpills" >> EncodeSpills(work_dir, opts.seed, opts.output_shards, opts.raster, analyze, files))
    written = sections | "WriteShards" >> WriteShards(opts.output, work_dir, quota, opts.output_shards)
    rejects = ((read[REJECT_PARTS], copies) | "AllRejects" >> beam.Flatten(), read[LINES]) | (
        "WriteRejects" >> WriteRejects(opts.output))
    counts = (read[COUNTS], selected_counts, copy_counts) | "AllCounts" >> beam.Flatten()
    stats = counts | "WriteStats" >> WriteStats(opts.output)
    finished = [
        (written, rejects) | "RemoveWorkFiles" >> RemoveWorkFiles(work_dir),
        class_names | "WriteClassFile" >> WriteClassFile(opts.output),
        rejects,
        stats]
    (counts, stats) | "RecordCounters" >> RecordCounters()
    if analyze:
        finished.append(train_rows | "AnalyzeTrainingSplit" >> AnalyzeTrainingSplit(opts.output, temp_dir))
    return finished


def check_argv(argv: list[str]) -> list[str]:
    """Refuses an option that neither this pipeline nor Beam knows (Beam would
    drop it with a warning and run with the default), naming the closest one.
    Beam's options are those of every PipelineOptions subclass, as Beam parses them."""
    if "-h" in argv or "--help" in argv:
        print(help_parser().format_help())
        raise SystemExit(0)
    parser = beam_parser()
    if "--help_beam" in argv:
        parser.prog = command_line.prog("quickdraw-pipeline", "pipeline.run")
        print(parser.format_help())
        raise SystemExit(0)
    try:
        _, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:  # a bad value
        raise PipelineError(str(e)) from None
    flags = [a for a in unknown if a.startswith("-")]
    if flags:
        name = flags[0].split("=", 1)[0]
        known = [o for action in parser._actions for o in action.option_strings]  # pylint: disable=protected-access
        raise PipelineError(command_line.unknown_option(name, known))
    if unknown:
        raise PipelineError("unexpected argument %r: options are --name=value (see --help)" % unknown[0])
    return argv


def beam_parser() -> argparse.ArgumentParser:
    """Every option Beam and this pipeline know: the parser Beam builds from the
    PipelineOptions subclasses, as ``get_all_options`` hands it to its
    ``add_extra_args_fn``. A bad value raises ``argparse.ArgumentError``."""
    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    [parser] = parsers
    parser.exit_on_error = False
    for action in parser._actions:  # pylint: disable=protected-access
        if action.dest == "help":
            action.help = "show the pipeline's own options and exit (--help_beam: Beam's)"
    return parser


# Drawings per class in train and eval when not given: the tutorial's for real
# data; for the bundled sample (25 a class), what it holds, so that the run
# with no flags gives a dataset the trainer can use.
TUTORIAL_COUNTS = {"train_observations_per_class": 10000, "eval_observations_per_class": 1000}
SAMPLE_COUNTS = {"train_observations_per_class": 20, "eval_observations_per_class": 5}


def _default_counts(opts: QuickDrawOptions) -> None:
    counts = SAMPLE_COUNTS if opts.input is None else TUTORIAL_COUNTS
    for name, value in counts.items():
        if getattr(opts, name) is None:
            setattr(opts, name, value)


# The numeric options' ranges: beyond them a value is a typo, not a dataset.
BOUNDS = {"train_observations_per_class": (0, 10 ** 8), "eval_observations_per_class": (0, 10 ** 8),
          "test_observations_per_class": (0, 10 ** 8), "output_shards": (1, 10_000),
          "max_points": (0, 10 ** 8), "max_bytes": (0, 1 << 30)}
_WHY_BOUND = {
    "train_observations_per_class": "the whole dataset holds 50M drawings",
    "eval_observations_per_class": "the whole dataset holds 50M drawings",
    "test_observations_per_class": "the whole dataset holds 50M drawings",
    "output_shards": "5,000 drawings a shard for the whole dataset; each shard is a file",
    "max_points": "0: no cap",
    "max_bytes": "a line is held in memory up to this size; 0: no cap",
}
WORKERS_PER_CORE = 4


def _check_values(opts: QuickDrawOptions) -> None:
    """Values out of range, named by their flag."""
    if not opts.output or not opts.output.strip():
        raise PipelineError("--output is empty: name the dataset's folder")
    if not -2 ** 63 <= opts.seed < 2 ** 63:
        raise PipelineError("--seed=%d: must be a 64-bit integer" % opts.seed)
    for name, (low, high) in BOUNDS.items():
        value = getattr(opts, name)
        if value < low:
            raise PipelineError("--%s=%d: must be at least %d" % (name, value, low))
        if value > high:
            raise PipelineError("--%s=%d: must be at most %d (%s)" % (name, value, high, _WHY_BOUND[name]))


def _check_runner(options: PipelineOptions) -> None:
    """Beam's own options that would otherwise fail inside the job with a traceback."""
    runner = options.view_as(StandardOptions).runner
    if runner:
        try:
            chosen = create_runner(runner)
        except (ValueError, ImportError, AttributeError):
            raise PipelineError("--runner=%s: not a Beam runner (e.g. DirectRunner, DataflowRunner, "
                                "FlinkRunner; see --help_beam)" % runner) from None
        # What beam.Pipeline checks, before the output folder is locked and cleared.
        errors = PipelineOptionsValidator(options, chosen).validate()
        if errors:
            raise PipelineError("--runner=%s: %s" % (runner, " ".join(errors[0].split())))
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers is not None and workers < 0:
        raise PipelineError("--direct_num_workers=%d: must be at least 0 (0: one per core)" % workers)
    most = WORKERS_PER_CORE * (os.cpu_count() or 1)
    if workers is not None and workers > most:
        raise PipelineError("--direct_num_workers=%d: must be at most %d on this machine (%d per core; "
                            "each is a process)" % (workers, most, WORKERS_PER_CORE))


def local_runner(options: PipelineOptions):
    """The runner behind ``--runner=DirectRunner`` (the default): Beam's
    FnApiRunner, in this process or in ``--direct_num_workers`` worker
    processes. Beam's own DirectRunner first tries to download and start its
    Prism runner, so the same command would run on another engine whenever
    the machine is online; None for every other runner."""
    runner = options.view_as(StandardOptions).runner
    if runner is not None and not isinstance(create_runner(runner), DirectRunner):
        return None
    return beam_internals.LocalRunner(options)


def launch_runner(options: PipelineOptions):
    """The runner of a run: ``local_runner``'s for the DirectRunner, Dataflow's
    with progress lines while the launcher waits, else None (Beam's own)."""
    local = local_runner(options)
    if local is not None:
        return local
    runner = options.view_as(StandardOptions).runner
    if runner and type(create_runner(runner)) is DataflowRunner:  # pylint: disable=unidiomatic-typecheck
        return counters.DataflowRunnerWithProgress()
    return None


def recorded_options(opts: QuickDrawOptions) -> dict:
    """The pipeline's own options as the manifest records them. The output
    folder is left out: a dataset keeps its identity when it is moved."""
    return {name: getattr(opts, name) for name in sorted(help_parser().dests()) if name != "output"}


def dataset_problem(stats: dict, classes: list[str] | None) -> str | None:
    """Why a finished job's output is not the dataset asked for, if it is not."""
    if not sum(stats["totals"]["selected"].values()):
        return "no drawing was selected: see %s and the rejects" % schema.STATS_FILE
    absent = [c for c in classes or () if not sum(stats["classes"].get(c, {}).get("selected", {}).values())]
    if absent:
        return "--classes: %s not in the input (no valid drawing of %s); see %s" % (
            quote_names(absent), "it" if len(absent) == 1 else "them", schema.STATS_FILE)
    return None


def _read_stats(output: str) -> dict:
    with FileSystems.open(FileSystems.join(output, schema.STATS_FILE)) as f:
        return json.loads(f.read())


def seal(_, output: str, classes: list[str] | None, fields: dict, *finished) -> bool:
    """The job's last step, once every output is written: removes the
    transform's temp folder and writes manifest.json, unless the dataset is not
    the one asked for. Run by the job itself, so that a job whose launcher does
    not wait for it (a Flex Template launch) is sealed too."""
    temp_dir = FileSystems.join(output, output_folder.TEMP_TRANSFORM)
    if FileSystems.exists(temp_dir):
        FileSystems.delete([temp_dir])
    stats = _read_stats(output)
    if dataset_problem(stats, classes):
        return False
    counts = dict(stats["totals"], classes=len(stats["classes"]))
    dataset_manifest.write_manifest(output, dict(fields, counts=counts))
    return True


class SealDataset(beam.PTransform):
    """Writes the manifest once all of ``finished`` (the writing steps' outputs)
    is computed: they are side inputs of a single element."""

    def __init__(self, output: str, classes: list[str] | None, fields: dict):
        super().__init__()
        self._args = (output, classes, fields)

    def expand(self, finished):
        waits = [beam.pvalue.AsList(pc) for pc in finished]
        return (finished[0].pipeline | "Once" >> beam.Create([None])
                | "WriteManifest" >> beam.Map(seal, *self._args, *waits))


def _finish(output: str, quota: split_lib.Quota, classes, skipped: int) -> dict:
    """After the job, in the launcher: the summary; a dataset that is not the
    one asked for is refused and its outputs removed (stats and rejects stay)."""
    stats = _read_stats(output)
    print(stats_lib.summary(stats, output, quota.total, skipped))
    problem = dataset_problem(stats, classes)
    if problem:
        output_folder.remove_outputs(output, keep=output_folder.DIAGNOSTICS)
        raise PipelineError(problem + "; no dataset was written")
    dataset_manifest.verify(output, checksums=False)
    print("Dataset complete: %s" % FileSystems.join(output, dataset_manifest.MANIFEST_FILE))
    return stats


def run(argv: list[str] | None = None) -> dict:
    """Runs the pipeline to completion and returns the contents of stats.json
    ({} where the runner goes on without waiting, e.g. a template launch)."""
    options = PipelineOptions(check_argv(list(argv or [])))
    opts = options.view_as(QuickDrawOptions)
    _default_counts(opts)
    _check_values(opts)
    _check_runner(options)
    quota = split_lib.Quota(opts.train_observations_per_class, opts.eval_observations_per_class,
                            opts.test_observations_per_class)
    if quota.total == 0:
        raise PipelineError("every --*_observations_per_class is 0: nothing to select")
    classes = read_classes(opts.classes)
    output = opts.output.rstrip("/") or "/"
    files, skipped = match_inputs(opts.input, classes, output)
    if skipped:
        logging.info("Leaving out %d files of the input that pipeline runs wrote, such as %s",
                     len(skipped), skipped[0])
    # A dry run builds the job and submits nothing: it must leave the folder
    # (an earlier dataset, say) as it is, so it checks without writing, takes
    # no lock, and tf.Transform writes the graph's SavedModels elsewhere.
    dry_run = options.view_as(TestOptions).dry_run
    try:
        output_folder.check_served(output, "--output")
        output_folder.check_writable(output, "--output", create=not dry_run)
        temp_location = options.view_as(GoogleCloudOptions).temp_location
        if temp_location:
            output_folder.check_writable(temp_location, "--temp_location", create=not dry_run)
        lock = None if dry_run else output_folder.OutputLock(output)
        if lock:
            lock.acquire()
    except output_folder.OutputError as e:
        raise PipelineError(str(e)) from None
    temp_dir = tempfile.mkdtemp(prefix="quickdraw-dry-run-") if dry_run else FileSystems.join(
        output, output_folder.TEMP_TRANSFORM)
    try:
        if lock:
            dataset_manifest.invalidate(output)
            removed = output_folder.remove_outputs(output)
            if removed:
                logging.info("Removed %d outputs of an earlier run from %s", len(removed), output)
        logging.info("Reading %d files into %s; starting the job (%s)", len(files), output,
                     options.view_as(StandardOptions).runner or "DirectRunner")
        console.set_progress(console.Progress(len(files)))
        fields = {"seed": opts.seed, "options": recorded_options(opts), "inputs": len(files),
                  "code_version": dataset_manifest.code_version()}
        with beam.Pipeline(runner=launch_runner(options), options=options) as p:
            finished = build(p, opts, quota, files, classes, temp_dir)
            tuple(finished) | "SealDataset" >> SealDataset(output, classes, fields)
        if dry_run:
            logging.info("Dry run: the job graph is built and was not submitted; %s is untouched", output)
            return {}
        if p.result.state != PipelineState.DONE:
            logging.info("The job goes on without this launcher (state %s); it writes %s when the "
                         "dataset is complete", p.result.state, dataset_manifest.MANIFEST_FILE)
            return {}
        stats = _finish(output, quota, classes, len(skipped))
        counters.check(p.result, stats)
        return stats
    except output_folder.OutputError as e:
        raise PipelineError(str(e)) from None
    finally:
        if lock:
            lock.release()
        if dry_run:
            shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """The command: 0 done, 2 a user error (one line on stderr); other errors raise."""
    console.configure_logging()
    return command_line.run_command(lambda: _run_command(argv), console.NATIVE_NOISE)


def _run_command(argv: list[str] | None) -> int:
    run(argv if argv is not None else sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
