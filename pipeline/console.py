"""What a pipeline run prints: its own lines, progress and the warnings that
matter, without the noise of TensorFlow, absl, Beam and tf.Transform that says
nothing to the user (native preambles on CPU machines, deprecation notes,
tf.Transform's serialisation warnings, protobuf dumps).
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time

from native_logs import NATIVE_NOISE, NativeStderrFilter  # noqa: F401 - the pipeline's filter

# Python log records that say nothing to the user, by message start.
QUIET_MESSAGES = (
    "Missing pipeline option (runner)",
    "Discarding unparseable args",
    "Tensorflow Transform is running in tf.compat.v1 mode",
    "Issue encountered when serializing",
    "Expected binary or unicode string",
    "No semi_persistent_directory found",
)
# TensorFlow's deprecation notes, also when a local worker forwards them.
_DEPRECATION = re.compile(r"is deprecated and will be removed|Instructions for updating:")
# Loggers whose records below ERROR are for the libraries' developers.
_DEVELOPER_LOGS = ("tensorflow", "absl", "tensorflow_transform", "tfx_bsl")

_PROGRESS = "progress-range-done"
_PROGRESS_RE = re.compile(_PROGRESS + r" lines=(\d+) last=([01]) (.*)")
_WORKER_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


def range_done(path: str, lines: int, last: bool) -> None:
    """Called by the worker that has read a piece of an input file (``last``:
    the file's final piece); the launcher turns these into progress lines
    (files done of total, lines per second)."""
    logging.getLogger("pipeline.progress").info("%s lines=%d last=%d %s", _PROGRESS, lines, int(last), path)


class Progress:
    """Counts the files read and prints a progress line at most every
    ``every`` seconds, and one when the last file is done."""

    def __init__(self, total_files: int, every: float = 5.0):
        self.total = total_files
        self.every = every
        self.files = self.lines = 0
        self._first = None   # (time, lines) at the first report: the rate leaves out start-up
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def add(self, lines: int, last: bool) -> str | None:
        """The progress line to print now, if any."""
        with self._lock:
            self.files += last
            self.lines += lines
            now = time.monotonic()
            if self._first is None:
                self._first = (now, self.lines)
            elif self.files < self.total and now - self._last < self.every:
                return None
            self._last = now
            text = "Read %d of %d files: %d lines" % (self.files, self.total, self.lines)
            elapsed = now - self._first[0]
            if elapsed >= 1:
                text += ", %.0f lines/s" % ((self.lines - self._first[1]) / elapsed)
            return text


class _Filter(logging.Filter):
    """Drops the noise, unwraps worker records forwarded as protobuf text,
    and turns per-file records into progress lines."""

    def __init__(self, progress: Progress | None):
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        forwarded = _WORKER_MESSAGE.search(text) if record.name.endswith("local_job_service") else None
        ours = bool(forwarded) and "/pipeline/" in text
        if forwarded:
            text = forwarded.group(1).replace('\\"', '"')
            record.msg, record.args = "worker: " + text, ()
        done = _PROGRESS_RE.search(text)
        if done:
            line = self.progress.add(int(done.group(1)), done.group(2) == "1") if self.progress else None
            if line is None:
                return False
            record.msg, record.args, record.levelno, record.levelname = line, (), logging.INFO, "INFO"
            return True
        if record.levelno >= logging.ERROR:
            return True
        if text.startswith(QUIET_MESSAGES) or _DEPRECATION.search(text) or \
                record.name.split(".", 1)[0] in _DEVELOPER_LOGS:
            return False
        return record.levelno >= logging.WARNING or ours or record.name == "root" or \
            record.name.startswith("pipeline")


def configure_logging(progress: Progress | None = None) -> logging.Handler:
    """One handler on the root logger, with the filter; returns it."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_Filter(progress))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _DEVELOPER_LOGS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.INFO)
    return handler


def set_progress(progress: Progress) -> None:
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, _Filter):
                f.progress = progress
