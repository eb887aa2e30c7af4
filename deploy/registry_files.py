"""The registry's files wherever its root is: paths, listing, reading, and the
records that writers race for.

Local disks and gs:// go through ``atomic_storage``: a record is created
exclusively or replaced by a compare-and-swap, and of writers racing for it
exactly one wins (``O_EXCL``-like links and a folder lock locally,
generation preconditions on gs://). Other schemes that ``tf.io.gfile`` reads
(hdfs://, ram://, s3://) work for one run at a time: their records are
replaced whole (``atomic_outputs``), with the content itself as the version
token, but two writers there are not kept apart.
"""
from __future__ import annotations

import os

import atomic_storage
import local_files
from atomic_outputs import write_atomically


def is_remote(path: str) -> bool:
    """True for object-store URLs (gs://, s3://...), read through tf.io.gfile."""
    return "://" in path


def join(root: str, *parts: str) -> str:
    if is_remote(root):
        return "/".join([root.rstrip("/")] + [p.strip("/") for p in parts])
    return os.path.join(root, *parts)


def _gfile():
    import tensorflow as tf  # only object stores need it; keeps local use light
    return tf.io.gfile


def exists(path: str) -> bool:
    if atomic_storage.served(path):
        return atomic_storage.exists(path)
    return _gfile().exists(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    if is_remote(path):
        if not _gfile().exists(path):
            return []
        return sorted(name.rstrip("/") for name in _gfile().listdir(path))
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def glob(pattern: str) -> list[str]:
    """The paths a pattern matches; a local folder part that exists as written
    is that folder (a registry in "models [1]/")."""
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    return local_files.glob(pattern)


def read_text(path: str) -> str:
    if is_remote(path):
        with _gfile().GFile(path, "r") as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_versioned(path: str) -> tuple[bytes, object] | None:
    """Content and version token (see ``atomic_storage``), None if absent.
    Elsewhere the content itself is the token."""
    if atomic_storage.served(path):
        return atomic_storage.read_versioned(path)
    if not _gfile().exists(path):
        return None
    with _gfile().GFile(path, "rb") as f:
        data = f.read()
    return data, data


def compare_and_swap(path: str, token: object, data: bytes) -> bool:
    """Replaces ``path`` with ``data`` if it is still the version ``token``
    names (None: if it is absent); False if another writer came first."""
    if atomic_storage.served(path):
        return atomic_storage.compare_and_swap(path, token, data)
    now = read_versioned(path)
    if (now[1] if now else None) != token:
        return False
    write_atomically(path, data)
    return True


def create_exclusive(path: str, data: bytes) -> bool:
    return compare_and_swap(path, None, data)
