"""TensorFlow's native lines, filtered out of a command's stderr.

TensorFlow's C++ code writes some lines straight to the stderr file
descriptor, before any log level applies: on a machine without a GPU, that
there is none, in every process that loads it. A filter on the descriptor is
the one place to drop them. No TensorFlow or Beam here: every command loads
this before them.
"""
from __future__ import annotations

import os
import re
import sys
import threading

# Native lines (written straight to the stderr file descriptor by TensorFlow's
# C++ code, in this process and in local workers) that carry no information:
# absl's preamble, INFO/WARNING lines, the CUDA probe on machines without a GPU,
# and the CPU-instructions note.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit"
    r"|To enable the following instructions: .* rebuild TensorFlow)")

# The lines that only say there is no GPU: the trainer's and the server's
# filter. TensorFlow's native warnings and errors (memory, devices) pass.
NO_GPU_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit)")


class NativeStderrFilter:
    """Routes the stderr file descriptor through a pipe and drops the lines
    ``noise`` matches; everything else is passed on unchanged. Child
    processes (local workers) inherit the filtered descriptor."""

    def __init__(self, noise: re.Pattern = NATIVE_NOISE):
        self._noise = noise
        self._saved = None
        self._thread = None

    def __enter__(self) -> "NativeStderrFilter":
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
        except (OSError, ValueError):
            return self
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, self._saved, self._noise),
                                        daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _pump(read_end: int, out: int, noise: re.Pattern) -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not noise.match(line.decode("utf-8", "replace")):
                        os.write(out, line + b"\n")
            if pending and not noise.match(pending.decode("utf-8", "replace")):
                os.write(out, pending)

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except ValueError:
            pass
        os.dup2(self._saved, 2)   # closes the pipe's last write end held here
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._thread is None or not self._thread.is_alive():
            os.close(self._saved)
        self._saved = None
