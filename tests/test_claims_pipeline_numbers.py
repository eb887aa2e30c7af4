"""Numbers README.md gives about how the pipeline works: units of at most
16 MB, ranks of 32 bytes, 64 planning tasks of fixed classes, the rejects'
1,000 lines a file and 10 copies a drawing, progress every 5 s locally and
30 s on Dataflow, and TF_CPP_MIN_LOG_LEVEL's default of 2."""
from __future__ import annotations

import os

import pytest

from pipeline import console, counters, planning, sources, split
from pipeline import stats as stats_lib
from sample_paths import REPO

MB16 = 16 << 20


def test_a_unit_is_at_most_16_mb_of_plain_ndjson():
    """README.md:107-108, 566-567: a worker holds one unit of at most 16 MB of
    plain ndjson, or one gzip file (README.md:118-120: a gzip file is one unit)."""
    files = ["big.ndjson", "huge.ndjson", "a.ndjson", "b.ndjson", "c.ndjson.gz"]
    sizes = [10 << 30, 100 << 20, 5 << 20, 12 << 20, 3 << 30]
    units = sources.plan_units(files, sizes)
    for unit in units:
        plain = [r for r in unit if not r.path.endswith(".gz")]
        held = sum((r.end if r.end is not None else sizes[r.file]) - r.start for r in plain)
        assert held <= MB16, unit
    gz = [u for u in units if any(r.path.endswith(".gz") for r in u)]
    assert len(gz) == 1 and [(r.start, r.end) for r in gz[0] if r.path.endswith(".gz")] == [(0, None)]
    assert sources.unit_bytes(10 ** 12) == MB16


def test_a_ranks_row_is_32_bytes():
    """README.md:123: ranks (32 bytes each)."""
    rank = split.rank_key(0, "123", 0, 0, b"{}")
    assert split.rank_array([rank, rank]).nbytes == 2 * 32


def test_64_planning_tasks_each_a_fixed_group_of_classes():
    """README.md:124-125: 64 planning tasks, each a fixed group of classes."""
    from dataset_categories import CATEGORIES
    groups = {planning.plan_group(c) for c in CATEGORIES}
    assert planning.PLAN_GROUPS == 64 and groups <= set(range(64)) and len(groups) > 32
    assert [planning.plan_group(c) for c in ("cat", "dog")] == [planning.plan_group(c) for c in ("cat", "dog")]


def test_rejects_written_a_file_and_copies_a_drawing():
    """README.md:120-121, 341: the first 1,000 rejected lines of each input file
    are written; of the copies of one drawing within one unit, the first 10."""
    assert stats_lib.REJECTS_PER_FILE == 1000 and stats_lib.COPIES_PER_DRAWING == 10


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_local_progress_at_most_every_5_seconds(monkeypatch):
    """README.md:184-185: `Read 120 of 345 files: 3400000 lines, 51000 lines/s`,
    at most every 5 seconds (and one when the last file is done)."""
    clock = Clock()
    monkeypatch.setattr(console.time, "monotonic", clock)
    progress = console.Progress(3)
    assert progress.add(1000, False) == "Read 0 of 3 files: 1000 lines"
    clock.now += 4.9
    assert progress.add(1000, True) is None
    clock.now += 0.2
    assert progress.add(1000, False) == "Read 1 of 3 files: 3000 lines, 392 lines/s"
    clock.now += 1
    assert progress.add(1000, True) is None
    clock.now += 1
    assert progress.add(1000, True) == "Read 3 of 3 files: 5000 lines, 563 lines/s"


def test_dataflow_progress_every_30_seconds():
    """README.md:207-208: on Dataflow a line from the counters every 30 seconds."""
    waits = []

    class Done(Exception):
        pass

    def wait(duration):
        waits.append(duration)
        raise Done
    with pytest.raises(Done):
        counters.wait_with_progress(None, wait)
    assert waits == [30_000] and counters.DataflowRunnerWithProgress.every == 30


def test_tf_cpp_min_log_level_defaults_to_2_and_a_users_value_is_kept(monkeypatch):
    """README.md:194-196: TF_CPP_MIN_LOG_LEVEL defaults to 2 in the launcher
    (its local workers inherit it) and the Dataflow image's workers; set to 0 it stays 0."""
    from pipeline import run as run_lib
    seen = []
    monkeypatch.setattr(run_lib, "_run_command", lambda argv: seen.append(os.environ["TF_CPP_MIN_LOG_LEVEL"]) or 0)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert run_lib.main([]) == 0
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert run_lib.main([]) == 0
    assert seen == ["2", "0"]
    dockerfile = (REPO / "deploy" / "dataflow" / "Dockerfile").read_text().splitlines()
    assert "ENV TF_CPP_MIN_LOG_LEVEL=2" in [l.strip() for l in dockerfile]
