"""The shape of the pipeline's graph, where a runner depends on it.

Beam 2.77's bundle-based DirectRunner (the local runner that retries a failed
bundle) fills a side input read from one of a step's several outputs with
either nothing or the elements of every output, whichever output comes first
in that process (``EvaluationContext._update_side_inputs_container``): the
rejects writer once got the read step's spill numbers and part paths as line
counts. The pipeline reads every side input from a step of one output; these
tests hold it to that, for the graph as a whole and for the runner itself."""
from __future__ import annotations

import subprocess
import sys
import tempfile

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import run as run_lib
from pipeline import split as split_lib
from pipeline.options import QuickDrawOptions, default_counts


def side_inputs_by_producer(p: beam.Pipeline) -> list[tuple[str, str, int]]:
    """(step, side input's producer, the producer's number of outputs) of every side input."""
    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, applied):
            for side in applied.side_inputs:
                producer = side.pvalue.producer
                found.append((applied.full_label, producer.full_label, len(producer.outputs)))

    p.visit(Visitor())
    return found


@pytest.mark.parametrize("analyze", [True, False], ids=["with-transform", "skip-transform"])
def test_every_side_input_is_read_from_a_step_of_one_output(bundled_sample, tmp_path, analyze):
    argv = ["--input=%s" % bundled_sample, "--output=%s" % (tmp_path / "out")]
    opts = PipelineOptions(argv + ([] if analyze else ["--skip_transform"])).view_as(QuickDrawOptions)
    default_counts(opts)
    quota = split_lib.Quota(opts.train_observations_per_class, opts.eval_observations_per_class,
                            opts.test_observations_per_class)
    files = sorted(str(f) for f in bundled_sample.glob("*.ndjson"))
    p = beam.Pipeline(options=PipelineOptions(argv))
    run_lib.build(p, opts, quota, files, None, str(tmp_path / "tmp"))
    sides = side_inputs_by_producer(p)
    assert any(step.startswith("WriteRejects/") for step, _, _ in sides)
    assert len(sides) >= 4
    assert [s for s in sides if s[2] != 1] == []


RUNNER_CHECK = """
import apache_beam as beam

class Outputs(beam.DoFn):
    def process(self, x):
        yield beam.pvalue.TaggedOutput("other", "other-%d" % x)
        yield beam.pvalue.TaggedOutput("side", x)
        yield -x

def show(_, side):
    print(sorted(side, key=str))

with beam.Pipeline(runner="BundleBasedDirectRunner") as p:
    out = p | beam.Create([1, 2]) | beam.ParDo(Outputs()).with_outputs("other", "side", main="main")
    _ = out.other | "UseOther" >> beam.Map(str)
    _ = out.main | "UseMain" >> beam.Map(str)
    side = out.side | "OneOutput" >> beam.Map(lambda x: x) if ONE_OUTPUT else out.side
    _ = p | "Once" >> beam.Create([None]) | beam.Map(show, beam.pvalue.AsList(side))
"""


def side_input_seen(one_output: bool, processes: int) -> set[str]:
    """What the side input holds in each of a few processes (the runner's
    order of a step's outputs differs from process to process)."""
    seen = set()
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(processes):
            out = subprocess.run([sys.executable, "-c", "ONE_OUTPUT = %r\n%s" % (one_output, RUNNER_CHECK)],
                                 cwd=folder, capture_output=True, text=True, timeout=120, check=True)
            seen.add(out.stdout.strip().splitlines()[-1])
    return seen


@pytest.mark.slow
def test_the_bundle_based_runner_fills_a_side_input_right_only_from_a_step_of_one_output():
    # Read from one of three outputs, the side input is wrong in every process:
    # empty, or every output's elements. If this fails, Beam has fixed it.
    assert "[1, 2]" not in side_input_seen(one_output=False, processes=2), beam.__version__
    assert side_input_seen(one_output=True, processes=4) == {"[1, 2]"}
