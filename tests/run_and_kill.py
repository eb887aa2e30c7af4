"""Runs the pipeline and SIGKILLs its own process at a chosen point, the way
an out-of-memory killer or a preempted machine would stop it.

    python tests/run_and_kill.py reading|shards|manifest PIPELINE_FLAGS...

reading: as the third input file is opened; shards: once the third output
shard is in place; manifest: with every output written, before the manifest.
"""
from __future__ import annotations

import os
import signal
import sys

from apache_beam.io.filesystems import FileSystems

import dataset_manifest
from pipeline import run, sources


def _die(*_args, **_kwargs):
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_on(method: str, count: int, wanted, before: bool) -> None:
    """Kills the process at the ``count``-th call of ``FileSystems.<method>``
    on a path that ``wanted`` accepts (before or after the call runs)."""
    real = getattr(FileSystems, method)
    seen = []

    def wrapper(paths, *args, **kwargs):
        targets = args[0] if method == "rename" else [paths]
        hits = [p for p in targets if wanted(p)]
        seen.extend(hits)
        if hits and before and len(seen) >= count:
            _die()
        result = real(paths, *args, **kwargs)
        if hits and not before and len(seen) >= count:
            _die()
        return result

    setattr(FileSystems, method, staticmethod(wrapper))


def _kill_on_input(count: int) -> None:
    """Kills the process as the ``count``-th input file is opened."""
    real = sources._open  # pylint: disable=protected-access
    seen = []

    def wrapper(path):
        seen.append(path)
        if len(seen) >= count:
            _die()
        return real(path)

    sources._open = wrapper  # pylint: disable=protected-access


def main() -> None:
    point, argv = sys.argv[1], sys.argv[2:]
    if point == "reading":
        _kill_on_input(3)
    elif point == "shards":
        _kill_on("rename", 3, lambda p: ".tfrecord-" in p, before=False)
    elif point == "manifest":
        dataset_manifest.write_manifest = _die
    else:
        raise SystemExit("unknown point %r" % point)
    sys.exit(run.main(argv))


if __name__ == "__main__":
    main()
