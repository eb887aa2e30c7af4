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
    with pytest.raises(folder_lock.LockError, match="Is a directory"):
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
