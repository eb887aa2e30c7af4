"""Beam counters: the record of a run that Dataflow's and Flink's UIs and
``result.metrics()`` show, in the namespace ``quickdraw``.

They are derived from the same partial counts ``{(class, field): n}`` as
stats.json (``pipeline.stats``), so the two cannot disagree: ``lines_read``,
``selected_train``, ``selected_eval``, ``selected_test``, ``unselected``,
``filtered``, ``rejected_<reason>`` (``rejected_duplicate`` and
``rejected_blank_line`` among them) and ``damaged_<reason>`` (files). The
launcher reads them back after the job and says so if they differ from
stats.json's totals; on Dataflow it prints progress from them while it waits.
"""
from __future__ import annotations

import collections
import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricResults, MetricsFilter
from apache_beam.runners import DataflowRunner, PipelineState
from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult

import tfrecord_schema as schema
from pipeline import stats as stats_lib

NAMESPACE = "quickdraw"
LINES_READ = "lines_read"
UNSELECTED = "unselected"
FILTERED = "filtered"
SELECTED = "selected_"
REJECTED = "rejected_"
DAMAGED = "damaged_"
# Seconds between progress lines while a Dataflow job runs.
PROGRESS_EVERY = 30.0


def increments(counts: dict) -> dict[str, int]:
    """The counter increments of one partial count dict. ``unselected`` is
    valid drawings less those selected and their extra copies, so it rises
    while the input is read and falls as the classes are planned."""
    out: collections.Counter = collections.Counter()
    for (_, field), n in counts.items():
        if field == stats_lib.READ:
            out[LINES_READ] += n
        elif field == stats_lib.FILTERED:
            out[FILTERED] += n
        elif field == stats_lib.VALID:
            out[UNSELECTED] += n
        elif field.startswith(stats_lib.SELECTED):
            out[SELECTED + field[len(stats_lib.SELECTED):]] += n
            out[UNSELECTED] -= n
        elif field.startswith(stats_lib.REJECTED):
            reason = field[len(stats_lib.REJECTED):]
            out[REJECTED + reason] += n
            if reason == stats_lib.DUPLICATE:
                out[UNSELECTED] -= n
    return {name: n for name, n in out.items() if n}


def of_stats(stats: dict) -> dict[str, int]:
    """The counters a run with these stats.json contents must end with. A
    damaged file is counted once, under its reason in stats.json, though
    several ranges of it may have hit the damage: ``damaged_<reason>`` is
    counted from the stats themselves, once they are built."""
    totals = stats["totals"]
    out: collections.Counter = collections.Counter(
        {LINES_READ: totals["read"], UNSELECTED: totals["unselected"], FILTERED: totals["filtered"]})
    out.update({SELECTED + split: n for split, n in totals["selected"].items()})
    out.update({REJECTED + reason: n for reason, n in totals["rejected"].items()})
    out.update(DAMAGED + reason for reason in stats["damaged_files"].values())
    return {name: n for name, n in out.items() if n}


def damaged(stats: dict) -> dict[str, int]:
    """The ``damaged_<reason>`` counters of a run's stats."""
    return {name: n for name, n in of_stats(stats).items() if name.startswith(DAMAGED)}


def query(result, attempted: bool = False) -> dict[str, int] | None:
    """The run's counters by name (committed ones where the runner keeps
    them), or None where the runner returns no metrics."""
    try:
        metrics = result.metrics()
    except NotImplementedError:
        return None
    if metrics is None:
        return None
    found: collections.Counter = collections.Counter()
    for counter in metrics.query(MetricsFilter().with_namespace(NAMESPACE))[MetricResults.COUNTERS]:
        value = counter.attempted if attempted or counter.committed is None else counter.committed
        found[counter.key.metric.name] += value or 0
    return {name: n for name, n in found.items() if n}


def differences(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """Each counter whose value is not the expected one (absent counts as 0)."""
    return ["%s: %d in %s, counter %d" % (name, expected.get(name, 0), schema.STATS_FILE, found.get(name, 0))
            for name in sorted(set(expected) | set(found)) if expected.get(name, 0) != found.get(name, 0)]


def check(result, stats: dict) -> list[str]:
    """Compares the job's counters with stats.json's totals, with a warning
    line if they differ; returns the differences (none where the runner
    returns no metrics)."""
    found = query(result)
    if found is None:
        return []
    diff = differences(of_stats(stats), found)
    if diff:
        logging.warning("The job's Beam counters (%s/...) disagree with %s: %s",
                        NAMESPACE, schema.STATS_FILE, "; ".join(diff))
    return diff


def wait_with_progress(result, wait, every: float = PROGRESS_EVERY) -> str:
    """Waits for a job that runs elsewhere (``wait``: its result's own
    ``wait_until_finish``), a progress line from its counters every ``every``
    seconds; returns its final state. A failed metrics request only skips a line."""
    before = None
    while True:
        state = wait(duration=int(every * 1000))
        if PipelineState.is_terminal(state):
            return state
        try:
            lines = (query(result, attempted=True) or {}).get(LINES_READ, 0)
        except Exception:  # noqa: BLE001 - progress must not end the launcher
            logging.debug("The job's counters could not be read", exc_info=True)
            continue
        now = time.monotonic()
        rate = ", %.0f lines/s" % ((lines - before[1]) / (now - before[0])) if before else ""
        logging.info("Job %s: %d lines read%s", state, lines, rate)
        before = (now, lines)


class DataflowRunnerWithProgress(DataflowRunner):
    """Dataflow's runner, whose result prints progress from the counters
    while the launcher waits for the job (``beam.Pipeline`` waits through
    ``wait_until_finish()``, which would say nothing for the job's duration)."""

    every = PROGRESS_EVERY

    def run_pipeline(self, pipeline, options):
        result = super().run_pipeline(pipeline, options)
        if isinstance(result, DataflowPipelineResult) and result.has_job:
            wait = result.wait_until_finish

            def wait_until_finish(duration=None):
                return wait(duration=duration) if duration else wait_with_progress(result, wait, self.every)
            result.wait_until_finish = wait_until_finish
        return result


class _IncrementCounters(beam.DoFn):
    """Adds a dict of counts ``{counter name: n}`` to the run's Beam counters."""

    def __init__(self, to_counters):
        self._to_counters = to_counters
        self._counters: dict = {}

    def process(self, element):
        for name, n in self._to_counters(element).items():
            if name not in self._counters:
                self._counters[name] = Metrics.counter(NAMESPACE, name)
            self._counters[name].inc(n)


class RecordCounters(beam.PTransform):
    """(partial counts, stats) -> the run's Beam counters:
    each partial count dict as it comes, so the UIs show the run's progress,
    and the damaged files once from the stats, where each counts once."""

    def expand(self, inputs):
        partial, stats = inputs
        return (
            partial | "Counts" >> beam.ParDo(_IncrementCounters(increments)),
            stats | "DamagedFiles" >> beam.ParDo(_IncrementCounters(damaged)))
