"""Exclusive creation and compare-and-swap of small files, on local disks and gs://.

Several processes (scheduled runs, a person re-running a step, the workers of
one job) may write the same small record at once: a lock, a version's first
record, the registry's ``current`` pointer. Plain writes let the last one win
silently; these calls let exactly one win and tell the others:

- ``create_exclusive(path, data)``: creates ``path`` with ``data`` unless it
  exists. Local: the bytes go to a temporary file that is hard-linked to
  ``path`` (``link`` fails if the name exists, like ``O_EXCL``, and the file
  appears complete); gs://: an upload with ``if_generation_match=0``.
- ``read_versioned(path)``: the content and a token naming that version of it
  (local: inode, modification time, size and a digest; gs://: the generation).
- ``replace(path, data)``: replaces ``path`` whatever it holds, atomically
  for readers, for records that only one writer changes.
- ``delete_if_unchanged(path, token)``: deletes ``path`` only if it is still
  that version (the same folder lock; gs://: ``if_generation_match``).
- ``compare_and_swap(path, token, data)``: replaces ``path`` only if it is
  still the version ``token`` names (``token=None``: only if it is absent).
  Local: under an exclusive ``flock`` on the folder, re-read, compare, write a
  temporary file and rename it over ``path``; gs://: an upload with
  ``if_generation_match=<generation>``.

Local paths and gs:// are served; any other scheme (s3://, hdfs://, ...) is
refused with ``UnsupportedStorage`` before anything is written, never taken
for a local path (``check_served``).

Readers never see a partial file. A process killed at any point leaves either
the old content or the new one; a temporary file it leaves is removed by the
next call on the same path (temporary names carry the writer's process id and
only those of processes that are gone are removed), so none accumulate.

It also names the temporary siblings of the trainer's and the registry's
whole-file writes (``temp_path``; a pipeline run's folder has its own
``.tmp-`` names, which a run sweeps) and publishes a finished local file
durably (``publish_local``), so that the writers built on it
(``atomic_outputs``, the downloader) keep these guarantees without a copy.

On gs:// the client retries a request that failed in transit; if an upload
succeeded but its answer was lost, the retry meets its own object and is
refused. A refusal after such a retry, of an object that holds exactly
``data``, is therefore counted as success: put something unique (host,
process id, time) into ``data`` where the caller must know that it, and not
an identical writer, won.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import uuid
from stat import S_ISREG
from typing import NamedTuple

import local_files

GS = "gs://"
_SCHEME_RE = re.compile(r"^(?P<scheme>[A-Za-z][-A-Za-z0-9+.]*)://")


class UnsupportedStorage(ValueError):
    """A path on a storage this module does not serve; ``str()`` is one line."""


class LocalToken(NamedTuple):
    """Identifies one version of a local file."""
    inode: int
    mtime_ns: int
    size: int
    sha256: str


def is_gs(path: str) -> bool:
    return path.startswith(GS)


def scheme(path: str) -> str:
    """``path``'s scheme as Beam reads it (``s3`` for ``s3://b/o``), '' for a local path."""
    match = _SCHEME_RE.match(path)
    return match.group("scheme") if match else ""


def check_served(path: str) -> None:
    """Refuses a path on a storage other than a local disk or gs://.

    A dataset's lock and manifest need an exclusive create and a
    compare-and-swap; they are provided, and raced in the tests, on those
    two only. TensorFlow 2.21, which writes the transform graph and which
    the trainer reads with, has no s3://, hdfs:// or Azure filesystem either
    (tensorflow-io, which adds them, was last released for TensorFlow 2.16).
    """
    found = scheme(path)
    if found in ("", "gs"):
        return
    if found == "file":
        raise UnsupportedStorage("file:// is not served: give the local path without file://")
    raise UnsupportedStorage(
        "%s:// is not served (local paths and gs:// are): a dataset's lock and manifest need an "
        "exclusive create and a compare-and-swap, tested on those only, and TensorFlow cannot "
        "open %s:// for tf.Transform and the trainer" % (found, found))


def served(path: str) -> bool:
    """True for a local path or gs://, the storages this module serves."""
    return scheme(path) in ("", "gs")


def _on_gs(path: str) -> bool:
    """True for gs://, False for a local path; any other scheme is refused."""
    check_served(path)
    return is_gs(path)


def create_exclusive(path: str, data: bytes) -> bool:
    """True if ``path`` was created with ``data``, False if it already existed."""
    if _on_gs(path):
        return _gs_upload(path, data, generation=0)
    return _local_create_exclusive(path, data)


def read_versioned(path: str) -> tuple[bytes, object] | None:
    """The content of ``path`` and a token for ``compare_and_swap``, or None
    if there is no such file."""
    if _on_gs(path):
        return _gs_read(path)
    return _local_read(path)


def compare_and_swap(path: str, token: object, data: bytes) -> bool:
    """Replaces ``path`` with ``data`` only if it is unchanged since the read
    that returned ``token`` (``None``: only if ``path`` does not exist).
    True if replaced, False if another writer changed it first."""
    if token is None:
        return create_exclusive(path, data)
    if _on_gs(path):
        if not isinstance(token, int):
            raise TypeError("a gs:// token is a generation (int), got %r"
                            % (token,))
        return _gs_upload(path, data, generation=token)
    if not isinstance(token, LocalToken):
        raise TypeError("a local token comes from read_versioned, got %r"
                        % (token,))
    return _local_compare_and_swap(path, token, data)


def delete_if_unchanged(path: str, token: object) -> bool:
    """Deletes ``path`` only if it is still the version ``token`` names (from
    ``read_versioned``); True if deleted, False if changed or gone."""
    if _on_gs(path):
        from google.api_core import exceptions
        try:
            _gs_blob(path).delete(if_generation_match=token)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return False
        return True
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return False
    with _FolderLock(directory):
        now = _local_read(path)
        if now is None or now[1] != token:
            return False
        os.unlink(path)
    _fsync_dir(directory)
    return True


def exists(path: str) -> bool:
    """True if ``path`` is a file, or a folder (on gs://, a prefix of some
    object)."""
    if not _on_gs(path):
        return os.path.exists(path)
    blob = _gs_blob(path.rstrip("/"))
    if blob.exists():
        return True
    return any(True for _ in _client().list_blobs(
        blob.bucket, prefix=blob.name + "/", max_results=1))


def replace(path: str, data: bytes) -> None:
    """Replaces ``path`` with ``data`` unconditionally, atomically for readers
    (a record only its own step writes, where no other writer competes)."""
    if _on_gs(path):
        _gs_blob(path).upload_from_string(
            data, content_type="application/octet-stream")
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temps(path)
    _local_replace(path, data, directory)


# Local files.

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")


def temp_path(path: str, kind: str = "tmp") -> str:
    """A unique hidden sibling of ``path`` (local or any URL): the same
    folder, hence the same filesystem, so that renaming it onto ``path`` stays
    a rename. It names the writer's process, so that a ``tmp`` one left here
    by a process that is gone is removed by the next call on ``path``; another
    ``kind`` (an old folder set aside, say) is never removed for its owner."""
    directory, name = os.path.split(path)
    return os.path.join(directory, ".%s.%d.%s.%s"
                        % (name, os.getpid(), uuid.uuid4().hex, kind))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: str) -> None:
    """Removes temporary files for ``path`` left by processes that are gone
    (killed between writing and renaming, or between linking and unlinking)."""
    directory, name = os.path.split(path)
    try:
        entries = os.listdir(directory or ".")
    except FileNotFoundError:
        return
    for entry in entries:
        match = _TEMP_RE.match(entry)
        if match and match.group("name") == name and \
                not _pid_alive(int(match.group("pid"))):
            try:
                os.remove(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: str, data: bytes) -> str:
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove_quietly(tmp)
        raise
    return tmp


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _local_create_exclusive(path: str, data: bytes) -> bool:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temps(path)
    tmp = _write_temp(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as e:  # a filesystem without hard links
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            return _create_with_o_excl(path, data)
    finally:
        _remove_quietly(tmp)
    _fsync_dir(directory)
    return True


def _create_with_o_excl(path: str, data: bytes) -> bool:
    """Fallback without hard links: a reader may briefly see the file empty."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def _local_read(path: str) -> tuple[bytes, LocalToken] | None:
    """Opened without blocking and read only if a regular file: a FIFO in
    the place of a lock or a record would stop the reader for good."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        stat = os.fstat(f.fileno())
        if not S_ISREG(stat.st_mode):
            raise local_files.NotARegularFile(path, stat.st_mode)
        data = f.read()
    return data, LocalToken(stat.st_ino, stat.st_mtime_ns, len(data),
                            hashlib.sha256(data).hexdigest())


class _FolderLock:
    """An exclusive flock on the folder itself: no lock file to leave behind,
    and the kernel releases it when the holder dies."""

    def __init__(self, directory: str):
        self.directory = directory
        self.fd = -1

    def __enter__(self) -> "_FolderLock":
        self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock


def _local_compare_and_swap(path: str, token: LocalToken, data: bytes) -> bool:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return False  # the file read earlier cannot be there any more
    with _FolderLock(directory):
        _remove_stale_temps(path)
        now = _local_read(path)
        if now is None or now[1] != token:
            return False
        _local_replace(path, data, directory)
    return True


def _local_replace(path: str, data: bytes, directory: str) -> None:
    """Writes a temp file beside ``path`` and renames it over ``path``."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(directory)


def publish_local(tmp: str, path: str) -> None:
    """Renames the finished local file ``tmp`` over ``path``, durably: its
    bytes reach the disk before the rename and the folder's entry after it,
    so that a crash leaves the old file or the whole new one."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


# Google Cloud Storage.

_CLIENT: tuple[tuple[int, str | None], object] | None = None


def _client():
    """One client per process (a forked child must not reuse its parent's
    connections) and endpoint: STORAGE_EMULATOR_HOST points it at an
    emulator."""
    global _CLIENT
    key = (os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST"))
    if _CLIENT is None or _CLIENT[0] != key:
        from google.cloud import storage
        _CLIENT = (key, storage.Client())
    return _CLIENT[1]


def _gs_blob(path: str):
    bucket, _, name = path[len(GS):].partition("/")
    if not bucket or not name:
        raise ValueError("%s names no object (gs://BUCKET/OBJECT)" % path)
    return _client().bucket(bucket).blob(name)


def _gs_read(path: str) -> tuple[bytes, int] | None:
    from google.api_core import exceptions
    while True:
        blob = _gs_blob(path)
        try:
            blob.reload()
            generation = int(blob.generation)
            return blob.download_as_bytes(
                if_generation_match=generation), generation
        except exceptions.NotFound:
            return None
        except exceptions.PreconditionFailed:
            continue  # replaced between the two requests: read the new one


def _gs_upload(path: str, data: bytes, generation: int) -> bool:
    from google.api_core import exceptions
    from google.cloud.storage.retry import DEFAULT_RETRY, _should_retry

    retried: list[Exception] = []

    def retry_if_transient(error: Exception) -> bool:
        if _should_retry(error):
            retried.append(error)
            return True
        return False

    try:
        _gs_blob(path).upload_from_string(
            data, content_type="application/octet-stream",
            if_generation_match=generation,
            retry=DEFAULT_RETRY.with_predicate(retry_if_transient))
    except exceptions.PreconditionFailed:
        if not retried:
            return False
        # A retry may meet the object its lost first attempt wrote.
        now = _gs_read(path)
        return now is not None and now[0] == data
    return True
