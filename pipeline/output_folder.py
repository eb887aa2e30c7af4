"""The output folder of a run: checked before the job, locked, cleared of an
earlier run's files, and sealed by the manifest (see dataset_manifest.py).

The lock is ``pipeline.lock`` in the folder (``folder_lock``), created
exclusively and holding the owner's host, process id, start time and a token.
A second run into the folder refuses at start. A lock whose owner is a
process of this host that is gone (killed) is taken over, with a log line, by
compare-and-swap, so only one run can take it. The owner of a lock made on
another host cannot be checked from here: such a lock (e.g. on gs:// from a
launcher VM that died) stays until it is deleted, and the error says which
file to delete, unless a retry of the same task takes it over (retrain's).
"""
from __future__ import annotations

import errno
import fnmatch
import logging
import os
import uuid

from apache_beam.io.filesystems import FileSystems

import dataset_manifest
import folder_lock
import tfrecord_schema as schema

TEMPORARY_PATTERNS = dataset_manifest.TEMPORARY_PATTERNS
# What a run writes into its folder, by top-level name. A run removes every
# one of them before its job starts, so nothing of an earlier run survives.
OUTPUT_PATTERNS = tuple(schema.shard_pattern(s) for s in schema.SPLITS) + (
    schema.CLASSES_FILE, schema.STATS_FILE, schema.LENGTH_STATS_FILE,
    schema.REJECTS_PREFIX + "-*", schema.TRANSFORM_DIR) + TEMPORARY_PATTERNS
# Every top-level name a run writes into its folder, the lock and manifest
# included: never read as input (see ``pipeline.inputs``).
RUN_NAMES = OUTPUT_PATTERNS + (dataset_manifest.MANIFEST_FILE, dataset_manifest.LOCK_FILE)
# What stays after a run that selected nothing: the report of why.
DIAGNOSTICS = (schema.STATS_FILE, schema.REJECTS_PREFIX + "-*")
TEMP_TRANSFORM = ".tmp-transform"


class OutputError(Exception):
    """The output folder cannot be used; one line."""


def is_gs(path: str) -> bool:
    return path.startswith("gs://")


def check_served(path: str, flag: str) -> None:
    """Refuses, before the job and before anything is written, a folder on a
    storage whose lock and manifest cannot be kept (``atomic_storage.check_served``):
    never a local folder named after the scheme."""
    import atomic_storage
    try:
        atomic_storage.check_served(path)
    except atomic_storage.UnsupportedStorage as e:
        raise OutputError("%s=%s: %s" % (flag, path, e)) from None


def check_writable(path: str, flag: str, create: bool = True) -> None:
    """Refuses before the job a local folder that cannot be created or written
    (a file in the way, no permission, a read-only disk). gs:// is checked by
    the first write, the lock. ``create=False`` (a dry run) writes nothing:
    the folder, or the nearest one that exists, is asked for write access."""
    if "://" in path:
        return
    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise OutputError("%s=%s is a file, not a folder" % (flag, path))
    existing = target
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError("%s=%s cannot be created: %s is a file" % (flag, path, existing))
    if not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError("%s=%s is not writable: %s" % (flag, path, os.strerror(
                errno.EROFS if _read_only(existing) else errno.EACCES)))
        return
    try:
        os.makedirs(target, exist_ok=True)
        probe = os.path.join(target, ".tmp-probe-%s" % uuid.uuid4().hex)
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OutputError("%s=%s is not writable: %s" % (flag, path, e.strerror or e)) from None


def _read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _top_level(folder: str) -> dict[str, bool]:
    """Top-level names in ``folder`` -> whether each is a folder."""
    names: dict[str, bool] = {}
    for rel in dataset_manifest.list_files(folder):
        head, sep, _ = rel.partition("/")
        names[head] = names.get(head, False) or bool(sep)
    if not is_gs(folder) and os.path.isdir(folder):
        for entry in os.scandir(folder):
            names[entry.name] = entry.is_dir()
    return names


def _named(folder: str, patterns: tuple[str, ...], keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The top-level names of ``folder`` matching ``patterns`` but not ``keep``,
    with the path each is deleted by (a gs:// folder ends in ``/``)."""
    return {name: FileSystems.join(folder.rstrip("/"), name) + ("/" if is_dir and is_gs(folder) else "")
            for name, is_dir in _top_level(folder).items()
            if any(fnmatch.fnmatchcase(name, p) for p in patterns)
            and not any(fnmatch.fnmatchcase(name, p) for p in keep)}


def remove_outputs(folder: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Deletes every output a run writes (``OUTPUT_PATTERNS``, its temporary
    files included) except names matching ``keep``; returns the names removed."""
    doomed = _named(folder, OUTPUT_PATTERNS, keep)
    if doomed:
        try:
            FileSystems.delete(sorted(doomed.values()))
        except Exception as e:  # BeamIOError wraps the OSError of each path
            raise OutputError("cannot remove %s's earlier output (%s): %s" % (
                folder, ", ".join(sorted(doomed)), _one_line(e))) from None
    return sorted(doomed)


def remove_temporary(folder: str) -> list[str]:
    """Deletes the temporary files and folders a run leaves when its job fails
    (``TEMPORARY_PATTERNS``): on a full disk, the space they hold. Best
    effort: a failure here must not hide the job's own."""
    try:
        doomed = _named(folder, TEMPORARY_PATTERNS)
        if doomed:
            FileSystems.delete(sorted(doomed.values()))
        return sorted(doomed)
    except Exception:  # noqa: BLE001 - see above
        logging.debug("could not remove the temporary files of %s", folder, exc_info=True)
        return []


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]


class OutputLock(folder_lock.FolderLock):
    """``pipeline.lock``: held by one run for the life of its job."""

    def __init__(self, folder: str):
        super().__init__(folder, dataset_manifest.LOCK_FILE, "writing into")

    def acquire(self, take_over: bool = False) -> None:
        try:
            super().acquire(take_over)
        except folder_lock.LockError as e:
            raise OutputError(str(e)) from None
