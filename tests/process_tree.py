"""A process's descendants and memory, read from Linux's /proc: what the
tests and the benchmarks measure a run's process tree with."""
from __future__ import annotations

import os
import threading


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, however deep."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def resident_bytes(pids) -> int:
    """The resident memory of these processes together (those still there)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total


class PeakMemory:
    """Peak memory of this process and all its descendants, sampled in a thread.

    ``peak_kib``: the largest VmHWM (peak resident set) of any one descendant.
    ``getrusage(RUSAGE_CHILDREN)`` is not enough: Linux charges a child that
    forks and execs with the parent's peak before the exec, so a worker (or a
    helper TensorFlow runs at import) started from a 600 MiB process reads as
    600 MiB; it also misses children that are never waited for. VmHWM belongs
    to the process's own address space after exec.

    ``total_pss_kib`` and ``total_rss_kib``: the largest sum, over one sample,
    of the proportional set size (shared pages split between the processes
    that map them) and of the resident set of this process and every
    descendant: the memory of the whole run. The RSS sum counts shared
    libraries once per process, so it is an upper bound.
    """

    def __init__(self, interval: float = 0.25):
        self.peak_kib = 0
        self.total_pss_kib = 0
        self.total_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(interval,),
                                        daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self, interval: float) -> None:
        me = os.getpid()
        while not self._stop.wait(interval):
            below = descendants(me)
            for pid in below:
                self.peak_kib = max(self.peak_kib, _vm_hwm_kib(pid))
            sizes = [_pss_rss_kib(pid) for pid in below | {me}]
            self.total_pss_kib = max(self.total_pss_kib, sum(p for p, _ in sizes))
            self.total_rss_kib = max(self.total_rss_kib, sum(r for _, r in sizes))


def _pss_rss_kib(pid: int) -> tuple[int, int]:
    pss = rss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
