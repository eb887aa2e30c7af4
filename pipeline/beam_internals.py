"""The parts of Beam this project uses that Beam does not publish, in one place.

Everything else goes through Beam's public API (``PipelineOptions``,
``get_all_options``, runner names). Each use here is needed because Beam
offers no public way to do the same, and ``tests/test_beam_internals.py``
fails, naming the installed Beam version, when an upgrade changes one:

- ``FnApiRunner(provision_info=ExtendedProvisionInfo(...))``: the local runner
  (Beam's runner name ``FnApiRunner``; ``DirectRunner`` would first download
  and try its Prism runner) hands its worker processes a provision info
  without the pipeline's options, and they read their filesystems' settings
  and credentials from it. The options are encoded as the portable runner
  encodes them (``JobServiceHandle.encode_pipeline_options``).
- ``FnApiRunner.run_via_runner_api``: the only point between the options
  (``--direct_running_mode=multi_processing`` makes ``run_pipeline`` set the
  workers' command, ``python -m apache_beam.runners.worker.sdk_worker_main``)
  and the start of the workers, where that command can be replaced by
  ``pipeline.worker``'s, so that the workers end with the launcher.
- ``sdk_worker_main.main``: what that command runs, called by ``pipeline.worker``
  once it has arranged to die with its parent.
"""
from __future__ import annotations

import os
import sys

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle

from pipeline import worker

# The module Beam's FnApiRunner runs as each worker process.
SDK_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"


def beam_worker_command() -> str:
    """The command FnApiRunner gives a multi_processing worker."""
    return "%s -m %s" % (sys.executable, SDK_WORKER_MODULE)


class LocalRunner(fn_runner.FnApiRunner):
    """Beam's FnApiRunner, configured by ``--direct_num_workers`` and
    ``--direct_running_mode``; its workers get the pipeline's options, and
    its worker processes end with this process (``pipeline.worker``)."""

    def __init__(self, options: PipelineOptions):
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        super().__init__(provision_info=fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))

    def run_via_runner_api(self, pipeline_proto, options):
        start_workers_through(pipeline_proto, os.getpid())
        return super().run_via_runner_api(pipeline_proto, options)


def start_workers_through(pipeline_proto, parent: int) -> int:
    """Points the multi_processing environments of a pipeline proto at
    ``pipeline.worker``, with ``parent`` (the launcher) as the process to die
    with; returns how many it changed."""
    beam_command = beam_worker_command().encode("utf-8")
    changed = 0
    for environment in pipeline_proto.components.environments.values():
        if environment.urn == python_urns.SUBPROCESS_SDK and environment.payload == beam_command:
            environment.payload = worker.command(parent).encode("utf-8")
            changed += 1
    return changed


def run_sdk_worker(argv: list[str]) -> None:
    """Runs Beam's SDK worker in this process, as its command would."""
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)
