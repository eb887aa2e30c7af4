"""A folder written by one run at a time: a lock file in it, created
exclusively (``atomic_storage``), that names its owner.

A pipeline run holds its output folder (``pipeline.lock``) and a training run
its model folder (``trainer.lock``) from start to end, so that two runs
started into one folder (a person and a schedule, a retry and its zombie) do
not mix their files: the second is refused in one line naming the first. A
lock whose owner ran on this host and is gone is taken over; one from another
host cannot be checked, so it is taken over only by a caller that knows it
was left by an earlier attempt of its own task (``take_over``). ``release``
deletes the lock only if it is still this run's version of it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid

import atomic_storage


class LockError(Exception):
    """The folder is held by another run, or the lock cannot be written; one line."""


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), on Linux."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(l.split()[1]) for l in f if l.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def where() -> dict:
    """What tells this process's pids apart from others of the same host name:
    the kernel's boot and the PID namespace (a container has its own)."""
    return {"host": socket.gethostname(), "boot_id": _read_text("/proc/sys/kernel/random/boot_id"),
            "pid_ns": _pid_namespace()}


def same_place(owner: dict) -> bool:
    """True if ``owner``'s pids are this process's: the same host, boot and
    PID namespace (the last two absent from records written before they were)."""
    here = where()
    return owner.get("host") == here["host"] and all(
        owner[key] == here[key] for key in ("boot_id", "pid_ns") if key in owner)


def owner_is_gone(owner: dict) -> bool:
    """True if the lock's owner ran where this process runs (host, boot and
    PID namespace) and is no longer there: its pid is free, or now belongs to
    a process started after the lock. Anything else cannot be checked from
    here: a container beside this one with the same host name, another
    machine of that name, a lock that does not say."""
    if not same_place(owner):
        return False
    pid = owner.get("pid")
    if type(pid) is not int or not 0 < pid < 1 << 22:  # Linux's largest pid
        return False
    try:
        since = float(owner.get("time", 0))
    except (TypeError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    started = _start_time(pid)
    return started is not None and started > since + 1


class FolderLock:
    """The lock ``name`` of ``folder``; ``doing`` says what its holder does
    there ("writing into", "training into") in the refusal."""

    def __init__(self, folder: str, name: str, doing: str):
        self.path = folder.rstrip("/") + "/" + name
        self._doing = doing
        self.owner = dict(where(), pid=os.getpid(), time=time.time(), token=uuid.uuid4().hex)
        self._data = json.dumps(self.owner, sort_keys=True).encode("utf-8")
        self._token = None

    def acquire(self, take_over: bool = False) -> None:
        """Takes the lock; a lock held by a run that is gone (on this host) is
        taken over, and with ``take_over`` any lock: the caller knows that the
        run which left it is an earlier attempt of its own, now dead."""
        try:
            if atomic_storage.create_exclusive(self.path, self._data):
                return
            found = atomic_storage.read_versioned(self.path)
            if found is None and atomic_storage.create_exclusive(self.path, self._data):
                return
        except OSError as e:
            raise LockError("cannot create the lock %s: %s" % (self.path, e.strerror or e)) from None
        except Exception as e:  # gs://: no credentials, no such bucket, no access
            if not atomic_storage.is_gs(self.path):
                raise
            raise LockError("cannot create the lock %s: %s" % (self.path, " ".join(str(e).split())[:300])) from None
        owner = _parse(found[0]) if found else {}
        if found and (take_over or owner_is_gone(owner)) and atomic_storage.compare_and_swap(
                self.path, found[1], self._data):
            logging.warning("Took over %s from %s (host %s, pid %s, started %s)", self.path,
                            "an earlier attempt" if take_over else "a run that is gone",
                            owner.get("host"), owner.get("pid"), _when(owner))
            return
        raise LockError(
            "another run is %s this folder (host %s, pid %s, started %s); if it is gone, delete %s"
            % (self._doing, owner.get("host", "?"), owner.get("pid", "?"), _when(owner), self.path))

    def release(self) -> None:
        """Deletes the lock if it is still this run's, in one step with the
        check (a run that took it over in between keeps it)."""
        try:
            found = atomic_storage.read_versioned(self.path)
            if found and _parse(found[0]).get("token") == self.owner["token"]:
                atomic_storage.delete_if_unchanged(self.path, found[1])
        except OSError as e:  # e.g. replaced by something not a file: not ours to remove
            logging.warning("Left %s: %s", self.path, e)

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _parse(data: bytes) -> dict:
    try:
        owner = json.loads(data)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _when(owner: dict) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(owner["time"])))
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return "?"
