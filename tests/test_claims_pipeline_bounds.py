"""README.md 'Options' (lines 232-238): the pipeline's numbers are checked
against the bounds the README gives, exactly: a value at its bound passes,
one past it is refused naming the flag."""
from __future__ import annotations

import os
import types

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import options
from pipeline.options import PipelineError

GOOD = {"output": "out", "seed": 0, "train_observations_per_class": 1, "eval_observations_per_class": 1,
        "test_observations_per_class": 0, "output_shards": 1, "max_points": 10, "max_bytes": 10}


def check(**values):
    options.check_values(types.SimpleNamespace(**{**GOOD, **values}))


@pytest.mark.parametrize("name, low, high", [
    ("train_observations_per_class", 0, 100_000_000), ("eval_observations_per_class", 0, 100_000_000),
    ("test_observations_per_class", 0, 100_000_000), ("output_shards", 1, 10_000),
    ("max_points", 0, 100_000_000), ("max_bytes", 0, 1 << 30)])
def test_each_bound_is_the_readmes(name, low, high):
    check(**{name: low})
    check(**{name: high})
    with pytest.raises(PipelineError, match="^--%s=%d: must be at most %d " % (name, high + 1, high)):
        check(**{name: high + 1})
    with pytest.raises(PipelineError, match="^--%s=%d: must be at least %d$" % (name, low - 1, low)):
        check(**{name: low - 1})


def test_the_readmes_example_line():
    """README.md:238: `error: --output_shards=100000000: must be at most 10000 (...)`."""
    with pytest.raises(PipelineError) as e:
        check(output_shards=100000000)
    assert str(e.value).startswith("--output_shards=100000000: must be at most 10000 (")
    assert str(e.value).endswith(")") and "\n" not in str(e.value)


def test_direct_num_workers_at_most_4_per_core():
    """README.md:236-237: `--direct_num_workers` at most 4 per core of the machine."""
    most = 4 * (os.cpu_count() or 1)
    options.check_runner(PipelineOptions(["--direct_num_workers=%d" % most]))
    with pytest.raises(PipelineError, match="^--direct_num_workers=%d: must be at most %d" % (most + 1, most)):
        options.check_runner(PipelineOptions(["--direct_num_workers=%d" % (most + 1)]))
