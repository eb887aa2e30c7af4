"""Attacks on folder_lock: a stale lock raced for by several processes,
mutual exclusion under repeated acquire/release, release after a take-over,
locks that are not a plain owner record, and the trainer's model_dir_lock."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import atomic_storage
import folder_lock
from race_helpers import race

PROCESSES = 4


def gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def write_lock(folder, owner: dict) -> None:
    with open(os.path.join(folder, "trainer.lock"), "wb") as f:
        f.write(json.dumps(owner).encode())


def take_worker(index: int, folder: str) -> str | None:
    """Tries the lock once; the token it holds, or None."""
    lock = folder_lock.FolderLock(folder, "trainer.lock", "training into")
    try:
        lock.acquire()
    except folder_lock.LockError:
        return None
    return lock.owner["token"]


def cycle_worker(index: int, folder: str, rounds: int) -> int:
    """Acquires and releases ``rounds`` times; while holding, checks that no
    other holder's marker is there. Returns how many overlaps it saw."""
    overlaps = 0
    marker = os.path.join(folder, "held")
    got = 0
    while got < rounds:
        lock = folder_lock.FolderLock(folder, "trainer.lock", "training into")
        try:
            lock.acquire()
        except folder_lock.LockError:
            continue
        got += 1
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            overlaps += 1
        else:
            os.close(fd)
            time.sleep(0.001)
            os.remove(marker)
        lock.release()
    return overlaps


def test_racing_take_over_of_a_dead_runs_lock_has_one_winner(tmp_path):
    folders = []
    for i in range(10):
        folder = tmp_path / ("run-%d" % i)
        folder.mkdir()
        write_lock(folder, {"host": socket.gethostname(), "pid": gone_pid(), "time": time.time(),
                            "token": "dead"})
        folders.append(str(folder))
    for folder, outcome in zip(folders, race(take_worker, [(f,) for f in folders], PROCESSES)):
        winners = [t for t in outcome if t is not None]
        assert len(winners) == 1, outcome
        assert json.loads(open(os.path.join(folder, "trainer.lock")).read())["token"] == winners[0]


def test_repeated_acquire_and_release_never_overlap(tmp_path):
    (outcome,) = race(cycle_worker, [(str(tmp_path), 15)], PROCESSES)
    assert outcome == [0] * PROCESSES
    assert not (tmp_path / "trainer.lock").exists()


def test_release_after_a_take_over_keeps_the_new_holders_lock(tmp_path):
    first = folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into")
    first.acquire()
    second = folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into")
    second.acquire(take_over=True)
    first.release()
    assert json.loads((tmp_path / "trainer.lock").read_text())["token"] == second.owner["token"]
    second.release()
    assert not (tmp_path / "trainer.lock").exists()


def test_release_when_the_lock_or_folder_is_gone_is_quiet(tmp_path):
    folder = tmp_path / "m"
    lock = folder_lock.FolderLock(str(folder), "trainer.lock", "training into")
    lock.acquire()  # creates the folder
    os.remove(folder / "trainer.lock")
    lock.release()
    lock.acquire()
    (folder / "trainer.lock").unlink()
    folder.rmdir()
    lock.release()


@pytest.mark.parametrize("content", [b"", b"\xff\xfe", b"[1]", b"null", b'{"host": 3}'])
def test_a_garbage_lock_is_refused_in_one_line_naming_the_file(tmp_path, content):
    (tmp_path / "trainer.lock").write_bytes(content)
    with pytest.raises(folder_lock.LockError) as refused:
        folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into").acquire()
    assert "\n" not in str(refused.value) and str(tmp_path / "trainer.lock") in str(refused.value)
    # take_over replaces it: the caller knows it is its own earlier attempt's
    folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into").acquire(take_over=True)


def test_a_directory_named_like_the_lock_is_one_line(tmp_path):
    (tmp_path / "trainer.lock").mkdir()
    with pytest.raises(folder_lock.LockError, match="(?i)is a directory"):
        folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into").acquire()


def test_a_lock_from_another_host_is_kept_even_if_its_pid_is_free_here(tmp_path):
    write_lock(tmp_path, {"host": socket.gethostname() + "-other", "pid": gone_pid(),
                          "time": time.time(), "token": "t"})
    with pytest.raises(folder_lock.LockError, match="-other"):
        folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into").acquire()


def test_a_lock_whose_pid_now_belongs_to_a_later_process_is_taken_over(tmp_path):
    # this process is alive; a lock older than it names its pid only by reuse
    write_lock(tmp_path, {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time() + 3600,
                          "token": "t"})
    with pytest.raises(folder_lock.LockError):  # this process started before: it is the owner
        folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into").acquire()
    write_lock(tmp_path, {"host": socket.gethostname(), "pid": os.getpid(), "time": 1.0, "token": "t"})
    folder_lock.FolderLock(str(tmp_path), "trainer.lock", "training into").acquire()


def test_a_sigkilled_holder_is_taken_over_once_reaped(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, folder_lock; "
         "folder_lock.FolderLock(sys.argv[1], 'trainer.lock', 'x').acquire(); print('held', flush=True); "
         "time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(folder_lock.LockError, match="pid %d" % holder.pid):
            folder_lock.FolderLock(str(tmp_path), "trainer.lock", "y").acquire()
    finally:
        holder.kill()
        holder.wait()
    folder_lock.FolderLock(str(tmp_path), "trainer.lock", "y").acquire()


def test_trainer_non_chief_takes_no_lock_and_chief_creates_the_folder(tmp_path):
    from trainer.train import model_dir_lock
    from trainer.errors import TrainerError  # noqa: F401 - the error type the chief raises
    folder = tmp_path / "not" / "yet"
    with model_dir_lock(str(folder), False, False):
        assert not folder.exists()
    with model_dir_lock(str(folder), True, False):
        assert (folder / "trainer.lock").exists()
        with model_dir_lock(str(folder), False, False):  # a worker in the same folder
            pass
        with pytest.raises(Exception, match="another run is training into"):
            with model_dir_lock(str(folder), True, False):
                pass
        assert (folder / "trainer.lock").exists()
    assert not (folder / "trainer.lock").exists()


def acquired_within(folder, seconds: float = 10) -> str:
    """acquire()'s outcome on a thread: a reader stuck on a FIFO fails the test."""
    import threading
    outcome = []

    def take():
        try:
            folder_lock.FolderLock(str(folder), "trainer.lock", "training into").acquire()
            outcome.append("acquired")
        except folder_lock.LockError as e:
            outcome.append(str(e))
    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, "acquire did not return within %g s" % seconds
    return outcome[0]


def test_a_fifo_named_like_the_lock_is_one_line_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "trainer.lock")
    assert "is a FIFO" in acquired_within(tmp_path)
    lock = folder_lock.FolderLock(str(tmp_path), "trainer.lock", "x")
    lock.release()  # not ours, not a file: left with a warning, no error


@pytest.mark.parametrize("owner", [
    {"pid": 1, "time": "x"}, {"pid": os.getpid(), "time": None}, {"pid": 10 ** 20},
    {"pid": 5, "time": 1e308}, {"pid": True}, {"pid": -1}])
def test_a_lock_of_this_host_with_nonsense_fields_is_one_line(tmp_path, owner):
    write_lock(tmp_path, dict(owner, host=socket.gethostname(), token="t"))
    refusal = acquired_within(tmp_path)
    assert refusal.startswith("another run is training into") and "\n" not in refusal


def test_a_lock_from_another_pid_namespace_or_boot_of_this_host_is_kept(tmp_path):
    """A container beside this one may share its host name but not its
    pids: a pid free here says nothing of the lock's owner there."""
    here = folder_lock.where()
    for other in ({"pid_ns": "pid:[1]"}, {"boot_id": "another-boot"}):
        write_lock(tmp_path, dict(here, pid=gone_pid(), time=1.0, token="t", **other))
        assert acquired_within(tmp_path).startswith("another run is training into")
    write_lock(tmp_path, dict(here, pid=gone_pid(), time=1.0, token="t"))
    assert acquired_within(tmp_path) == "acquired"


def test_a_holder_in_its_own_pid_namespace_keeps_its_lock(tmp_path):
    """The same check with real namespaces: a process in a new PID namespace
    (as a container is) sees its own pid 1, which is free or another process
    here; the lock it holds must not be taken over from outside, nor the
    outside's from within."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-pf", "--mount-proc", "true"],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot create a PID namespace here (needs root and unshare)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    holder = subprocess.Popen(
        ["unshare", "-pf", "--mount-proc", sys.executable, "-c",
         "import sys, time, folder_lock; folder_lock.FolderLock(sys.argv[1], 'trainer.lock', 'x').acquire(); "
         "print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert acquired_within(tmp_path).startswith("another run is training into")
    finally:
        holder.kill()
        holder.wait()
