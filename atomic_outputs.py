"""Outputs written whole, on any filesystem TensorFlow opens: the trainer's
reports, config and export, the model registry's records.

- ``write_atomically(path, data)``: readers see the old file or the new one,
  never part of one. Local paths and gs:// go through
  ``atomic_storage.replace`` (locally a temporary sibling, flushed to disk,
  renamed over ``path``, the folder flushed; on gs:// one upload); other
  object stores (s3://) get one upload of the whole object through
  ``tf.io.gfile``; other TensorFlow filesystems (hdfs://, ram://) a
  temporary sibling renamed over ``path``.
- ``publish_folder(staging, target)``: a finished folder made visible as
  ``target`` whole, the one it replaces kept until then.

Temporary names are ``atomic_storage.temp_path``'s. TensorFlow is imported
only for a path that needs it, so the registry's local use stays light.
"""
from __future__ import annotations

import ctypes
import errno
import os

import atomic_storage

# Object stores whose uploads replace an object whole: no rename needed.
OBJECT_STORES = ("gs://", "s3://")


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def write_atomically(path: str, data: bytes) -> None:
    """Replaces ``path`` with ``data``; a writer killed midway leaves the old
    file, and on a local disk no temporary file once the next write ran."""
    if atomic_storage.served(path):
        atomic_storage.replace(path, data)
    elif path.startswith(OBJECT_STORES):
        with _gfile().GFile(path, "wb") as f:
            f.write(data)
    else:
        tmp = atomic_storage.temp_path(path)
        with _gfile().GFile(tmp, "wb") as f:
            f.write(data)
        _gfile().rename(tmp, path, overwrite=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swaps two local directories in one step (Linux ``renameat2``); False if unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, "cannot swap %s and %s: %s" % (a, b, os.strerror(code)))


def publish_folder(staging: str, target: str) -> None:
    """Makes the finished folder ``staging`` (a ``temp_path`` of ``target``)
    visible as ``target`` whole.

    No target yet: one rename. A target already there (an export being
    served) is only moved after its replacement is complete: on a local
    Linux filesystem the two folders are swapped in one step, so ``target``
    always holds the old folder or the new one; elsewhere the old one is
    renamed aside, the new one renamed in, then the old one deleted. On an
    object store (gs://) a folder rename is object by object, hence not
    atomic: serve from versioned folders there.
    """
    import tensorflow as tf
    gfile = tf.io.gfile
    if not gfile.exists(target):
        gfile.rename(staging, target)
        return
    if "://" not in target and _exchange(staging, target):
        gfile.rmtree(staging)  # now the old folder
        return
    aside = atomic_storage.temp_path(target, "old")
    gfile.rename(target, aside)
    try:
        gfile.rename(staging, target)
    except tf.errors.OpError:
        gfile.rename(aside, target)
        raise
    gfile.rmtree(aside)
