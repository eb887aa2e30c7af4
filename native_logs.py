"""TensorFlow's native lines, filtered out of a command's stderr by a separate process.

TensorFlow's C++ code writes some lines straight to the stderr file
descriptor, before any log level applies (absl's preamble, the CUDA probe on
machines without a GPU, oneDNN and CPU-instruction notes), in every process
that loads it. A filter on the descriptor is the one place to drop them.

The filter runs in a process of its own, not in a thread: a process that
dies natively (a ``Check failed`` then ``abort()``, a segfault) takes its
threads with it, and with them whatever its pipe still held, which is
exactly the fatal line. The filtering process outlives it, reads the pipe
to its end and forwards every line the noise pattern does not match; fatal
(``F``) and error (``E``) lines never match. No TensorFlow or Beam here:
every command loads this before them.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

# Native lines (written straight to the stderr file descriptor by TensorFlow's
# C++ code, in this process and in local workers) that carry no information:
# absl's preamble, INFO/WARNING lines, the CUDA probe on machines without a GPU,
# and the CPU-instructions note. The pipeline's filter.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit"
    r"|To enable the following instructions: .* rebuild TensorFlow)")

# The trainer's, predict's and the server's filter: native INFO lines (which
# ones a build prints depends on the processor: oneDNN's note on some) and
# the lines that only say there is no GPU. Native warnings and errors pass.
NATIVE_INFO_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit"
    r"|To enable the following instructions: .* rebuild TensorFlow)")

# The filtering process: standard library only, started with -S so that it
# is up in a few milliseconds. It ignores SIGINT (a Ctrl-C reaches the whole
# process group: the command's traceback must still pass) and ends when every
# writer of the pipe has closed it.
_PUMP = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(sys.argv[1].encode())
pending = b""
while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    kept = b"".join(line + b"\n" for line in lines if not noise.match(line))
    if kept:
        os.write(1, kept)
if pending and not noise.match(pending):
    os.write(1, pending)
"""


def _wanted_everything() -> bool:
    """``TF_CPP_MIN_LOG_LEVEL=0`` asks for every native line: no filter then."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


class NativeStderrFilter:
    """Routes the stderr file descriptor through a pipe to a filtering process
    that drops the lines ``noise`` matches and passes everything else on
    unchanged, also after this process dies. Child processes (local workers)
    inherit the filtered descriptor."""

    def __init__(self, noise: re.Pattern = NATIVE_NOISE):
        self._noise = noise
        self._saved: int | None = None
        self._pump: subprocess.Popen | None = None

    def __enter__(self) -> "NativeStderrFilter":
        if _wanted_everything():
            return self
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            return self
        read_end, write_end = os.pipe()
        try:
            self._pump = subprocess.Popen(
                [sys.executable, "-S", "-c", _PUMP, self._noise.pattern],
                stdin=read_end, stdout=saved, stderr=saved, close_fds=True)
        except OSError:
            os.close(write_end)
            os.close(saved)
            return self
        finally:
            os.close(read_end)
        self._saved = saved
        os.dup2(write_end, 2)
        os.close(write_end)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except ValueError:
            pass
        os.dup2(self._saved, 2)   # closes the pipe's last write end held here
        os.close(self._saved)
        self._saved = None
        try:
            # Local workers that still hold the pipe keep the filter running;
            # it ends on its own when they close it.
            self._pump.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
