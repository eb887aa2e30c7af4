"""The progress of a download: files, bytes, rate and time left.

On a terminal it is one line, rewritten twice a second; in a log (output not
a terminal) it is a plain line every ``LOG_EVERY`` seconds, so a long run
in CI or under ``nohup`` says it is alive without flooding the log. The rate
is measured over the last ``RATE_WINDOW`` seconds, so the time left follows
the network's current speed rather than the run's average.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from typing import TextIO

TTY_EVERY = 0.5
LOG_EVERY = 30.0
RATE_WINDOW = 10.0


def size_text(n: float) -> str:
    """Bytes for people: ``812 B``, ``4.2 MiB``, ``21.3 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return "%d B" % n if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024
    raise AssertionError("unreachable")


def duration_text(seconds: float) -> str:
    """``9 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %02d s" % divmod(seconds, 60)
    return "%d h %02d min" % (seconds // 3600, seconds % 3600 // 60)


class Progress:
    """Counts bytes and files from any thread and shows them from its own."""

    def __init__(self, files: int, total_bytes: int, done_bytes: int = 0,
                 stream: TextIO | None = None, every: float | None = None):
        self.files, self.total_bytes = files, total_bytes
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else TTY_EVERY if self.tty else LOG_EVERY
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._done, self._files_done = done_bytes, 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(self.started, done_bytes)])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, n: int) -> None:
        with self._lock:
            self._done += n

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1

    def rate(self, now: float | None = None) -> float:
        """Bytes per second over the last ``RATE_WINDOW`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            done = self._done
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
                self._samples.popleft()
            then, before = self._samples[0]
        return (done - before) / (now - then) if now > then else 0.0

    def line(self, now: float | None = None) -> str:
        rate = self.rate(now)
        with self._lock:
            done, files_done = self._done, self._files_done
        left = self.total_bytes - done
        eta = ", %s left" % duration_text(left / rate) if rate > 0 and left > 0 else ""
        return "%d of %d files, %s of %s, %s/s%s" % (
            files_done, self.files, size_text(done), size_text(self.total_bytes), size_text(rate), eta)

    def show(self) -> None:
        text = self.line()
        with self._lock:
            self.stream.write("\r%s\x1b[K" % text if self.tty else text + "\n")
            self.stream.flush()

    def note(self, text: str, stream: TextIO | None = None) -> None:
        """A line of its own (a failure) that the progress line does not overwrite."""
        with self._lock:
            if self.tty:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            print(text, file=stream or self.stream, flush=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.show()

    def __enter__(self) -> "Progress":
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.tty:
            self.show()
            self.stream.write("\n")
            self.stream.flush()
