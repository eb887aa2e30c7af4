"""benchmarks/sizing.py: the stage model against a local run, and the
figures docs/deploy.md quotes for the full dataset."""
from __future__ import annotations

import sys

import pytest

from sample_paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import sizing  # noqa: E402


@pytest.mark.slow
def test_model_predicts_the_task_counts_of_a_local_run():
    found = sizing.check()
    assert found["predicted"] == found["observed"]
    assert found["observed"]["ReadDrawings"] > 8 and found["observed"]["merges"] > 0


def test_full_dataset_figures_and_the_deployed_shard_count():
    from dataset_categories import CATEGORIES
    from test_dataflow_job import launch_commands
    sample = sizing.Sample.measure()
    assert (round(sample.line_bytes), round(sample.points, 1), round(sample.record_bytes)) == (475, 44.5, 694)
    shards = int(next(a for a in launch_commands("run") if "output_shards=" in a).rsplit("=", 1)[1])
    stages = {s.name: s for s in sizing.model(50_000_000, sorted(CATEGORIES), (10000, 1000, 1000),
                                               shards, sizing.Sample.measure())}
    assert [stages[n].tasks for n in ("ReadDrawings", "PlanClasses", "EncodeSpills", "WriteShards")] == \
        [1725, 64, 1725, 96]
    # The shard count is chosen so that the write stage fits 32 workers x 4 cores at once,
    # its slowest task a third of the tutorial's 10 shards'.
    ten = sizing.model(50_000_000, sorted(CATEGORIES), (10000, 1000, 1000), 10, sizing.Sample.measure())[-1]
    assert stages["WriteShards"].tasks <= 32 * 4
    assert round(stages["WriteShards"].slowest_bytes / 1e6) == 369 < ten.slowest_bytes / 3e6
    assert round(ten.slowest_bytes / 1e6) == 1182 and ten.tasks == 30
    assert "1725 sections, 55 intermediate merges" in stages["WriteShards"].slowest
    wider = sizing.model(50_000_000, sorted(CATEGORIES), (10000, 1000, 1000), shards, sizing.Sample.measure(),
                         fan_in=64)[-1]
    assert round(wider.slowest_bytes / 1e6) == 301
    assert round(stages["ReadDrawings"].slowest_bytes / 1e6) == 25
    temporary = sum(s.writes for s in stages.values()) - sum(  # all but the shards themselves
        (n * 345) * (sizing.Sample.measure().record_bytes + sizing.TFRECORD_FRAMING) for n in (10000, 1000, 1000))
    assert round(temporary / 1e9) == 19
