"""Local input files are read only when they are regular files, and a local
path that exists names itself.

A FIFO makes ``open`` wait for a writer, a device such as /dev/zero or
/dev/urandom never ends, a socket cannot be opened: none of them is an input
file, whatever its name. Its status is read (links followed) before anything
opens it, and again on the descriptor, opened without blocking, in case the
path was replaced in between. No third-party import: the mosaic command uses
this without Beam.

Inputs are given as patterns (``*``, ``?``, ``[...]``), but a folder named
"run [1]" is no pattern: where the folder part of a pattern exists as
written, it is escaped (``literal_folder``), for Beam's and TensorFlow's
matching alike.
"""
from __future__ import annotations

import os
import re
import stat
from typing import BinaryIO, Iterator

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


class NotARegularFile(OSError):
    """An input path that is something else than a regular file; ``kind``
    says what (``a FIFO``, ``a directory``, ...)."""

    def __init__(self, path: str, mode: int):
        self.kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
        self.is_directory = stat.S_ISDIR(mode)
        super().__init__("%s is %s, not a regular file" % (path, self.kind))


def check_regular(path: str) -> None:
    """Raises NotARegularFile unless ``path`` is a regular file once links are
    followed (OSError if its status cannot be read). Opens nothing."""
    _check(path, os.stat(path).st_mode)


def open_regular(path: str):
    """``path`` opened for binary reading if it is a regular file; else
    NotARegularFile, before any open that could block."""
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFile(path, mode)


def bounded_lines(f: BinaryIO, max_bytes: int) -> Iterator[bytes]:
    """The lines of ``f`` without their newline, as the pipeline splits them;
    a line longer than ``max_bytes`` (0: no cap) is cut to its first
    ``max_bytes + 1`` bytes, which the validator rejects as too long, and the
    rest is skipped a chunk at a time: a line is never held whole beyond the cap."""
    limit = max_bytes + 1 if max_bytes else -1
    while line := f.readline(limit):
        if line.endswith(b"\n"):
            yield line[:-1]
            continue
        yield line  # the last line, or the first max_bytes + 1 bytes of a longer one
        if len(line) == limit:
            while (rest := f.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass


# What a pattern treats specially: wildcards, and TensorFlow's escape.
_SPECIAL = re.compile(r"[*?\[\\]")


def escape_pattern(path: str) -> str:
    """``path`` as a pattern that matches only itself (Beam's, Python's and
    TensorFlow's matching alike): each * ? [ in a class of its own, and a
    backslash as one escaped in its class, which TensorFlow needs."""
    return _SPECIAL.sub(lambda m: "[\\\\]" if m.group() == "\\" else "[%s]" % m.group(), path)


def existing_folder(pattern: str) -> str | None:
    """The longest leading folder of a local pattern that exists as written."""
    if "://" in pattern:
        return None
    parts = pattern.split("/")
    for end in range(len(parts) - 1, 0, -1):
        folder = "/".join(parts[:end])
        if folder and os.path.isdir(folder):
            return folder
    return None


def literal_folder(pattern: str) -> str:
    """A local pattern within a folder that exists as written is a pattern
    within that folder ("run [1]/*.ndjson", "run [1]/*/cat.ndjson"): the
    folder's part is escaped."""
    folder = existing_folder(pattern)
    if folder and _SPECIAL.search(folder):
        return escape_pattern(folder) + pattern[len(folder):]
    return pattern


def split_list(value: str) -> list[str]:
    """A comma-separated list of paths or patterns; a local value that exists
    as written, or whose longest existing leading folder holds the comma
    ("drawings, 2017/*.ndjson"), is one entry."""
    if "://" not in value and (os.path.lexists(value) or "," in (existing_folder(value) or "")):
        return [value]
    return [part.strip() for part in value.split(",") if part.strip()]


def glob(pattern: str) -> list[str]:
    """The local paths a pattern matches (Python's syntax): the path itself if
    it exists as written, else the pattern within its literal folder."""
    import glob as pattern_matching
    if os.path.lexists(pattern):
        return [pattern]
    return sorted(pattern_matching.glob(literal_folder(pattern)))
