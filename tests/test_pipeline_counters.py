"""Beam counters as the record of a run: derived from the same partial
counts as stats.json, read back by the launcher and compared with it, and on
Dataflow turned into progress lines while the launcher waits."""
from __future__ import annotations

import gzip
import logging
import shutil
from types import SimpleNamespace

import pytest
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metric import MetricResults
from apache_beam.metrics.metricbase import MetricName
from apache_beam.runners import DataflowRunner, PipelineState
from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult

from pipeline import counters
from pipeline import run as run_lib
from pipeline import stats as stats_lib


class FakeMetrics:
    """``result.metrics()`` of a run that counted ``values`` (committed), in one step each."""

    def __init__(self, values: dict, attempted: dict | None = None):
        self.values, self.attempted = values, attempted or values
        self.filters = []

    def query(self, metrics_filter=None):
        self.filters.append(metrics_filter)
        found = [MetricResult(MetricKey("Step", MetricName(counters.NAMESPACE, name)), n, self.attempted[name])
                 for name, n in self.values.items()]
        return {MetricResults.COUNTERS: found, MetricResults.DISTRIBUTIONS: [], MetricResults.GAUGES: []}


PARTIAL = [  # what the reading, planning and encoding steps emit for two classes
    {("cat", stats_lib.READ): 7, ("cat", stats_lib.VALID): 6, ("cat", stats_lib.REJECTED + "bad_stroke"): 1,
     ("dog", stats_lib.READ): 4, ("dog", stats_lib.VALID): 2, ("dog", stats_lib.FILTERED): 2,
     (None, stats_lib.READ): 2, (None, stats_lib.REJECTED + stats_lib.BLANK_LINE): 1,
     (None, stats_lib.REJECTED + "invalid_json"): 1, (None, stats_lib.BLANK_LINES + "a.ndjson"): 1,
     (None, stats_lib.damaged_field("truncated_gzip", "c.ndjson.gz")): 1,
     (None, stats_lib.damaged_field("unreadable", "big.ndjson")): 1},
    {(None, stats_lib.damaged_field("unreadable", "big.ndjson")): 1},  # a second range of the same file
    {("cat", stats_lib.SELECTED + "train"): 3, ("cat", stats_lib.SELECTED + "eval"): 1,
     ("cat", stats_lib.REJECTED + stats_lib.DUPLICATE): 1, ("dog", stats_lib.SELECTED + "train"): 2},
]


def test_counters_and_stats_come_from_the_same_counts():
    summed = stats_lib.SumCounts()
    stats = stats_lib.build_stats(summed.extract_output(summed.add_inputs(summed.create_accumulator(), PARTIAL)))
    added: dict = {}
    for partial in PARTIAL:
        for name, n in counters.increments(partial).items():
            added[name] = added.get(name, 0) + n
    added.update(counters.damaged(stats))
    assert {k: v for k, v in added.items() if v} == counters.of_stats(stats) == {
        "lines_read": 13, "selected_train": 5, "selected_eval": 1, "unselected": 1, "filtered": 2,
        "rejected_bad_stroke": 1, "rejected_blank_line": 1, "rejected_invalid_json": 1,
        "rejected_duplicate": 1, "damaged_truncated_gzip": 1, "damaged_unreadable": 1}


def test_the_comparison_names_each_counter_that_differs(caplog):
    stats = {"totals": {"read": 10, "selected": {"train": 6, "eval": 2, "test": 0}, "unselected": 1,
                        "filtered": 0, "rejected": {"bad_stroke": 1}},
             "damaged_files": {"c.ndjson.gz": "truncated_gzip"}}
    same = {"lines_read": 10, "selected_train": 6, "selected_eval": 2, "unselected": 1,
            "rejected_bad_stroke": 1, "damaged_truncated_gzip": 1}
    result = SimpleNamespace(metrics=lambda: FakeMetrics(same))
    with caplog.at_level(logging.WARNING):
        assert counters.check(result, stats) == []
    assert not caplog.records
    result = SimpleNamespace(metrics=lambda: FakeMetrics(dict(same, lines_read=9, rejected_invalid_json=1)))
    with caplog.at_level(logging.WARNING):
        assert counters.check(result, stats) == [
            "lines_read: 10 in stats.json, counter 9", "rejected_invalid_json: 0 in stats.json, counter 1"]
    assert any(r.levelno == logging.WARNING and "lines_read" in r.getMessage() for r in caplog.records)


def test_a_runner_without_metrics_is_not_compared():
    def refuse():
        raise NotImplementedError
    assert counters.check(SimpleNamespace(metrics=refuse), {}) == []
    assert counters.check(SimpleNamespace(metrics=lambda: None), {}) == []


@pytest.mark.slow
def test_the_counters_of_a_real_run_agree_with_its_stats(tmp_path, bundled_sample, monkeypatch, caplog):
    """Two worker processes, rejects, a duplicate, a blank line and a damaged file."""
    source = tmp_path / "input"
    shutil.copytree(bundled_sample, source, ignore=shutil.ignore_patterns("*.md"))
    cat = (source / "cat.ndjson").read_text().splitlines()
    (source / "cat.ndjson").write_text("\n".join(cat + [cat[0], "", '{"word": "cat"}']) + "\n")
    with gzip.open(source / "fish.ndjson.gz", "wb") as f:
        f.write((source / "fish.ndjson").read_bytes())
    (source / "fish.ndjson.gz").write_bytes((source / "fish.ndjson.gz").read_bytes()[:-200])
    (source / "fish.ndjson").unlink()
    checked = []
    real_check = counters.check

    def check(result, stats):
        checked.append((counters.query(result), stats, real_check(result, stats)))
        return checked[-1][2]
    monkeypatch.setattr(counters, "check", check)
    caplog.set_level(logging.INFO)
    stats = run_lib.run(["--input=%s" % source, "--output=%s" % (tmp_path / "out"), "--skip_transform",
                         "--train_observations_per_class=24", "--eval_observations_per_class=1",
                         "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    [(found, checked_stats, diff)] = checked
    assert checked_stats == stats and diff == []
    assert found == counters.of_stats(stats)
    assert found["rejected_duplicate"] == found["rejected_blank_line"] == found["rejected_missing_drawing"] == 1
    assert found["damaged_truncated_gzip"] == 1 and found["lines_read"] == stats["totals"]["read"] > 400
    assert "disagree" not in caplog.text


class FakeDataflowResult(DataflowPipelineResult):
    """A Dataflow job that runs for ``polls`` waits, reading 1000 lines a wait."""

    def __init__(self, polls: int):
        super().__init__(job=SimpleNamespace(id="job"), runner=None)
        self.waits = []
        self.polls = polls

    def wait_until_finish(self, duration=None):
        self.waits.append(duration)
        return PipelineState.RUNNING if len(self.waits) < self.polls else PipelineState.DONE

    def metrics(self):
        lines = 1000 * len(self.waits)
        return FakeMetrics({"lines_read": lines - 500}, {"lines_read": lines})


def test_dataflow_progress_comes_from_the_counters_while_the_launcher_waits(monkeypatch, caplog):
    job = FakeDataflowResult(polls=3)
    monkeypatch.setattr(DataflowRunner, "run_pipeline", lambda self, pipeline, options: job)
    runner = counters.DataflowRunnerWithProgress()
    runner.every = 0.25
    caplog.set_level(logging.INFO)
    result = runner.run_pipeline(None, None)
    assert result.wait_until_finish() == PipelineState.DONE   # what beam.Pipeline calls
    assert job.waits == [250, 250, 250]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Job ")]
    assert lines[0] == "Job RUNNING: 1000 lines read" and lines[1].startswith("Job RUNNING: 2000 lines read, ")
    assert len(lines) == 2
    assert result.wait_until_finish(duration=5) == PipelineState.DONE and job.waits[-1] == 5


def test_progress_survives_a_failed_metrics_request(caplog):
    job = FakeDataflowResult(polls=3)

    def unavailable():
        raise OSError("503")
    job.metrics = unavailable
    assert counters.wait_with_progress(job, job.wait_until_finish, every=0.01) == PipelineState.DONE
    assert len(job.waits) == 3


def test_the_launcher_gives_dataflow_runs_the_progress_runner():
    options = run_lib.PipelineOptions(["--runner=DataflowRunner"])
    assert isinstance(run_lib.launch_runner(options), counters.DataflowRunnerWithProgress)
    assert run_lib.launch_runner(run_lib.PipelineOptions(["--runner=PortableRunner"])) is None
