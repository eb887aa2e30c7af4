"""Local worker processes that end with the process that started them.

With ``--direct_running_mode=multi_processing`` Beam's FnApiRunner starts each
worker as ``sh -c "python -m apache_beam.runners.worker.sdk_worker_main"``
from a thread of the launcher. When the launcher is killed (SIGKILL, the OOM
killer), such a worker only notices when its gRPC channel gives up, 15 s or
more later, holding its memory and its files meanwhile. The launcher's runner
(``pipeline.beam_internals.LocalRunner``) starts them through this module instead
(``exec``, so the worker is the launcher's own child): on Linux a worker asks
the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), elsewhere
it watches its parent; and it exits at once if the launcher is already gone.
Nothing heavy is imported before that.
"""
from __future__ import annotations

import os
import shlex
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def command(parent: int) -> str:
    """The shell command that starts a worker of process ``parent``."""
    return "exec %s -m pipeline.worker %d" % (shlex.quote(sys.executable), parent)


def die_with_parent(parent: int) -> None:
    """Ends this process when ``parent`` ends, and now if it already has
    (this process then has another parent)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch, args=(parent,), name="watch-launcher", daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def main() -> None:
    die_with_parent(int(sys.argv[1]))
    from pipeline import beam_internals

    beam_internals.run_sdk_worker(sys.argv)


if __name__ == "__main__":
    main()
