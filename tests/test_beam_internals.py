"""What the project assumes of Beam beyond its public API
(``pipeline/beam_internals.py``), and of the public calls it uses in a way
Beam does not document: each check fails naming the installed Beam version,
so an upgrade that changes one is found here, not in a run."""
from __future__ import annotations

import argparse
import inspect
import os
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import fn_runner

from pipeline import beam_internals, worker
from pipeline import options as options_lib


def expect(condition, what: str) -> None:
    if not condition:
        pytest.fail("Apache Beam %s: %s; see pipeline/beam_internals.py" % (beam.__version__, what), pytrace=False)


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_fn_api_runner_takes_a_provision_info_and_hands_workers_the_options():
    expect("provision_info" in parameters(fn_runner.FnApiRunner.__init__),
           "FnApiRunner() no longer takes provision_info")
    expect(parameters(fn_runner.FnApiRunner.run_via_runner_api)[:3] == ["self", "pipeline_proto", "options"],
           "FnApiRunner.run_via_runner_api(self, pipeline_proto, options) changed")
    runner = beam_internals.LocalRunner(PipelineOptions(["--input=a.ndjson", "--direct_num_workers=2"]))
    expect(isinstance(runner._provision_info, fn_runner.ExtendedProvisionInfo),  # pylint: disable=protected-access
           "FnApiRunner keeps no ExtendedProvisionInfo")
    fields = runner._provision_info.provision_info.pipeline_options.fields  # pylint: disable=protected-access
    expect(fields["beam:option:input:v1"].string_value == "a.ndjson",
           "JobServiceHandle.encode_pipeline_options no longer encodes options as beam:option:<name>:v1")


def test_multi_processing_workers_are_started_through_pipeline_worker(monkeypatch):
    """run_pipeline sets the workers' command and calls run_via_runner_api
    with the proto, where LocalRunner replaces that command."""
    seen = []

    def capture(self, pipeline_proto, options):
        seen.append(pipeline_proto)
        return fn_runner.RunnerResult("DONE", {})
    monkeypatch.setattr(fn_runner.FnApiRunner, "run_via_runner_api", capture)
    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    runner = beam_internals.LocalRunner(options)
    p = beam.Pipeline(runner=runner, options=options)
    _ = p | beam.Create([1]) | beam.Map(lambda x: x)
    p.run()
    expect(len(seen) == 1, "FnApiRunner.run_pipeline no longer calls run_via_runner_api")
    payloads = [e.payload for e in seen[0].components.environments.values() if e.urn == python_urns.SUBPROCESS_SDK]
    expect(payloads == [worker.command(os.getpid()).encode("utf-8")],
           "multi_processing workers are no longer started as %r: %r" % (
               beam_internals.beam_worker_command(), payloads))
    expect(runner._num_workers == 2,  # pylint: disable=protected-access
           "FnApiRunner no longer reads --direct_num_workers")
    expect(options.view_as(DirectOptions).direct_running_mode == "multi_processing", "options changed")


def test_the_sdk_worker_entry_point_is_there():
    from apache_beam.runners.worker import sdk_worker_main
    expect(beam_internals.SDK_WORKER_MODULE == sdk_worker_main.__name__, "sdk_worker_main moved")
    expect(len(parameters(sdk_worker_main.main)) == 1, "sdk_worker_main.main(argv) changed")


def test_get_all_options_hands_over_the_parser_of_every_option():
    parser = options_lib.beam_parser()
    expect(isinstance(parser, argparse.ArgumentParser),
           "get_all_options(add_extra_args_fn=...) no longer passes an ArgumentParser")
    known = {o for a in parser._actions for o in a.option_strings}  # pylint: disable=protected-access
    expect({"--runner", "--direct_num_workers", "--project", "--flink_master", "--input", "--ndjson_path"} <= known,
           "the parser given to add_extra_args_fn lacks options of the PipelineOptions subclasses")
    with pytest.raises(argparse.ArgumentError, match="--seed: invalid int value"):
        parser.parse_known_args(["--seed=abc"])
    expect(parser.parse_known_args(["--direct=1"])[1] == ["--direct=1"],
           "an option that abbreviates several is no longer left unknown")


def test_direct_runner_names_are_the_switching_direct_runner():
    from apache_beam.runners import DirectRunner
    from apache_beam.runners.runner import create_runner
    expect(all(isinstance(create_runner(name), DirectRunner) for name in ("DirectRunner", "direct")),
           "--runner=DirectRunner is no longer apache_beam.runners.DirectRunner")
    expect(not isinstance(create_runner("BundleBasedDirectRunner"), DirectRunner),
           "BundleBasedDirectRunner became a DirectRunner")
    expect(sys.executable in beam_internals.beam_worker_command(), "the worker command")


def test_beams_own_direct_runner_tries_prism_first():
    """Why ``pipeline.run.local_runner`` runs the FnApiRunner itself (README,
    "Running it for real"): Beam's DirectRunner hands a pipeline that Prism
    supports to its PrismRunner, which downloads and starts a binary."""
    from apache_beam.runners.direct import direct_runner
    source = inspect.getsource(direct_runner.DirectRunner.run_pipeline)
    expect("PrismRunner" in source and "supported_by_prism_runner" in source,
           "DirectRunner.run_pipeline no longer hands pipelines to the PrismRunner")
