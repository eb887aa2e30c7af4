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

import logging
import shutil
import tempfile

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions, TestOptions
from apache_beam.runners import DataflowRunner, DirectRunner, PipelineState, create_runner

import command_line
import dataset_manifest
import tfrecord_schema as schema
from pipeline import beam_internals, console, counters, output_folder, sources
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.counters import RecordCounters
from pipeline.encoding import EncodeSpills
from pipeline.inputs import match_inputs
from pipeline.options import (PipelineError, QuickDrawOptions, check_argv, check_runner, check_values,
                              default_counts, help_parser, read_classes)
from pipeline.planning import PlanClasses
from pipeline.reading import COUNTS, LINES, SPILLS, ReadDrawings
from pipeline.rejects import REJECT_PARTS, WriteRejects
from pipeline.seal import SealDataset, dataset_problem, read_stats
from pipeline.tft_analysis import AnalyzeTrainingSplit
from pipeline.writing import RemoveWorkFiles, WriteClassFile, WriteShards, WriteStats

WORK_DIR = ".tmp-work"  # the workers' spill and run files, removed at the end


def build(p: beam.Pipeline, opts: QuickDrawOptions, quota: split_lib.Quota, files: list[str],
          classes, temp_dir: str):
    """Wires the composite transforms together (a module for each stage:
    ``pipeline.reading``, ``planning``, ``encoding``, ``writing``, ``rejects``);
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


def _finish(output: str, quota: split_lib.Quota, classes, skipped: int) -> dict:
    """After the job, in the launcher: the summary; a dataset that is not the
    one asked for is refused and its outputs removed (stats and rejects stay)."""
    stats = read_stats(output)
    print(stats_lib.summary(stats, output, quota.total, skipped))
    problem = dataset_problem(stats, classes)
    if problem:
        output_folder.remove_outputs(output, keep=output_folder.DIAGNOSTICS)
        raise PipelineError(problem + "; no dataset was written")
    dataset_manifest.verify(output, checksums=False)
    print("Dataset complete: %s" % FileSystems.join(output, dataset_manifest.MANIFEST_FILE))
    return stats


def run(argv: list[str] | None = None, take_over_lock: bool = False) -> dict:
    """Runs the pipeline to completion and returns the contents of stats.json
    ({} where the runner goes on without waiting, e.g. a template launch).
    ``take_over_lock``: the output's lock, if any, was left by an earlier
    attempt of the caller's own task, now dead (see ``OutputLock.acquire``)."""
    options = PipelineOptions(check_argv(list(argv or [])))
    opts = options.view_as(QuickDrawOptions)
    default_counts(opts)
    check_values(opts)
    check_runner(options)
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
            lock.acquire(take_over=take_over_lock)
    except output_folder.OutputError as e:
        raise PipelineError(str(e)) from None
    temp_dir = tempfile.mkdtemp(prefix="quickdraw-dry-run-") if dry_run else FileSystems.join(
        output, output_folder.TEMP_TRANSFORM)
    runner = None
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
        runner = launch_runner(options)
        with beam.Pipeline(runner=runner, options=options) as p:
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
    except BaseException as e:
        # A local job that failed is over (its workers die with it): its
        # temporary files go, which on a full disk is the space it took.
        removed = lock and isinstance(runner, beam_internals.LocalRunner) and output_folder.remove_temporary(output)
        full = command_line.storage_full(e)
        if full:
            raise PipelineError("%s: %s while the job wrote there%s; free space or give another --output" % (
                output, full, "; its temporary files are removed" if removed else "")) from None
        raise
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
