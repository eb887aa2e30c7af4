"""The console: the user's lines and progress, not the libraries' noise."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from pipeline import console

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796016206.715353   19721 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1796016214.063503   19721 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
]
KEPT = [
    "E0000 00:00:1796016214.063503   19721 some_op.cc:52] a real error",
    "Traceback (most recent call last):",
]


def _through_filter(pattern: str, lines: list[str]) -> list[str]:
    """What a process that writes ``lines`` to its stderr descriptor, filtered
    by ``native_logs.<pattern>``, leaves on stderr."""
    script = ("import os, sys\nimport native_logs\n"
              "with native_logs.NativeStderrFilter(native_logs.%s):\n"
              "    for line in sys.argv[1:]:\n        os.write(2, (line + '\\n').encode())\n" % pattern)
    done = subprocess.run([sys.executable, "-c", script] + lines, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()), timeout=120)
    assert done.returncode == 0
    return done.stderr.splitlines()


def test_native_noise_is_dropped_and_everything_else_passes():
    assert console.NativeStderrFilter is __import__("native_logs").NativeStderrFilter
    assert _through_filter("NATIVE_NOISE", NOISE + KEPT) == KEPT


# Printed on some processors only (AMD EPYC, for one), whatever TF_CPP_MIN_LOG_LEVEL says.
ONEDNN = ["I0000 00:00:1796516182.769158    8574 port.cc:153] oneDNN custom operations are on. "
          "You may see slightly different numerical results due to floating-point round-off errors."]


def test_the_trainers_filter_drops_native_info_and_no_gpu_lines_and_keeps_warnings():
    kept = KEPT + [
        "W0000 00:00:1796016214.063503   19721 bfc_allocator.cc:291] Allocator (GPU_0_bfc) ran out of memory"]
    assert _through_filter("NATIVE_INFO_NOISE", NOISE + ONEDNN + kept) == kept


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


@pytest.mark.parametrize("name,level,msg", [
    ("root", logging.INFO, "Missing pipeline option (runner). Executing pipeline using the default runner"),
    ("apache_beam.options.pipeline_options", logging.WARNING, "Discarding unparseable args: ['--x']"),
    ("tensorflow", logging.WARNING, "Issue encountered when serializing tft_analyzer_use. 'Counter' object has no attribute 'name'"),
    ("tensorflow", logging.WARNING, "Expected binary or unicode string, got type_url: \"type.googleapis.com/tensorflow.AssetFileDef\""),
    ("tensorflow", logging.WARNING, "Tensorflow Transform is running in tf.compat.v1 mode."),
    ("apache_beam.runners.portability.local_job_service", logging.WARNING,
     'message: "From /x/signature_def_utils_impl.py:225: build_tensor_info is deprecated and will be removed"'),
    ("apache_beam.runners.worker.sdk_worker", logging.INFO, "Creating insecure control channel"),
])
def test_library_noise_is_dropped(name, level, msg):
    assert not console._Filter(None).filter(_record(name, level, msg))


@pytest.mark.parametrize("name,level,msg", [
    ("root", logging.INFO, "Reading 20 files into out"),
    ("root", logging.WARNING, "Damaged input x.ndjson.gz (truncated): read 3 lines before the damage"),
    ("tensorflow", logging.ERROR, "a real failure"),
    ("apache_beam.runners.direct", logging.WARNING, "a runner warning"),
])
def test_the_users_lines_are_kept(name, level, msg):
    assert console._Filter(None).filter(_record(name, level, msg))


def test_progress_counts_files_done_and_reports_at_most_every_few_seconds():
    progress = console.Progress(3, every=3600)
    keep = console._Filter(progress)
    first = _record("pipeline.progress", logging.INFO, "progress-range-done lines=10 last=0 /in/a.ndjson")
    assert keep.filter(first) and first.getMessage() == "Read 0 of 3 files: 10 lines"
    assert not keep.filter(_record("pipeline.progress", logging.INFO, "progress-range-done lines=5 last=1 /in/a.ndjson"))
    assert not keep.filter(_record("pipeline.progress", logging.INFO, "progress-range-done lines=5 last=1 /in/b.ndjson"))
    forwarded = _record("apache_beam.runners.portability.local_job_service", logging.INFO,
                        'message: "progress-range-done lines=7 last=1 /in/c.ndjson"')
    assert keep.filter(forwarded) and forwarded.getMessage().startswith("Read 3 of 3 files: 27 lines")
