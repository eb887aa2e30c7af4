"""A launcher killed with SIGKILL (the OOM killer, a preempted machine)
takes its local worker processes with it, during start-up and mid-run:
they do not go on for the 15 s or more that their gRPC channel takes to
give up, holding memory and files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from process_tree import descendants

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it is not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _workers(pid: int) -> set[int]:
    """The launcher's Python worker processes, however deep (Beam's own start
    them under a shell)."""
    out = set()
    for child in descendants(pid):
        try:
            with open("/proc/%d/cmdline" % child, "rb") as f:
                command = f.read()
        except OSError:
            continue
        if b"pipeline.worker" in command or b"sdk_worker_main" in command and not command.startswith(b"/bin/sh"):
            out.add(child)
    return out


def _launch(tmp_path: Path, folder: Path) -> tuple[subprocess.Popen, list[str]]:
    lines: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", "--input=%s" % folder, "--output=%s" % (tmp_path / "out"),
         "--train_observations_per_class=20", "--eval_observations_per_class=5", "--output_shards=2",
         "--skip_transform", "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    return proc, lines


def _kill_and_check(proc: subprocess.Popen, when) -> None:
    """Waits (at most 120 s) until ``when()`` is true with two workers
    running, SIGKILLs the launcher and checks that every worker is gone
    within 3 s."""
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while time.monotonic() < deadline and not (len(workers) == 2 and when()):
            assert proc.poll() is None, "the run ended before it could be killed"
            workers = _workers(proc.pid)
            time.sleep(0.05)
        assert len(workers) == 2, "no two workers after 120 s: %s" % workers
        everything = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(map(_alive, everything)):
            time.sleep(0.05)
        assert not [p for p in everything if _alive(p)], "still running 3 s after the launcher was killed"
    finally:
        for pid in descendants(proc.pid) | _workers(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
def test_workers_end_with_a_launcher_killed_while_they_start(tmp_path):
    proc, _ = _launch(tmp_path, SAMPLE)
    _kill_and_check(proc, lambda: True)


@pytest.mark.slow
def test_workers_end_with_a_launcher_killed_while_they_read(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(SAMPLE.glob("*.ndjson")):
        lines = path.read_bytes().splitlines()
        (folder / path.name).write_bytes(b"\n".join(lines * 400) + b"\n")  # copies: read, then dropped
    proc, lines = _launch(tmp_path, folder)
    _kill_and_check(proc, lambda: any("Read 1 of" in line for line in lines))
