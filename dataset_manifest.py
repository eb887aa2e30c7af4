"""A dataset is complete or refused: the manifest of a pipeline's output folder.

A pipeline run first *invalidates* its output folder (the manifest is replaced by
an "incomplete" marker in one atomic step), then writes its files, and writes the
manifest last: every file of the folder with its size and CRC-32C, the counts,
the options and seed, and the code version. A reader (trainer, retrain driver,
registry) calls :func:`verify`, which refuses in one line a folder whose files
differ from the manifest, or a pipeline folder whose run never finished.

Files are listed and read through Beam's ``FileSystems`` (local paths, gs://):
the same layer that writes them, installed wherever this project runs, also on
Beam launchers without TensorFlow. manifest.json itself is replaced through
``atomic_storage.replace`` (rename locally, one upload on gs://). A folder on
any other storage is refused (``atomic_storage.check_served``).
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import subprocess

import command_line
import local_files
import tfrecord_schema as schema
from tfrecord_schema import MANIFEST_FILE

# The names a run writes under before it renames, or in temporary folders
# (its own, tf.Transform's, Beam's): never part of a dataset.
TEMPORARY_PATTERNS = (".tmp-*", "beam-temp-*")
LOCK_FILE = "pipeline.lock"   # held by a running pipeline; never part of a dataset
FORMAT = 1
_CHUNK = 8 << 20

# Names only the pipeline writes: a folder holding one of them and no valid
# manifest is a pipeline folder whose run did not finish (or an older run's).
_PIPELINE_MARKERS = (schema.STATS_FILE, schema.LENGTH_STATS_FILE, schema.TRANSFORM_DIR + "/*",
                     schema.REJECTS_PREFIX + "-*", ".tmp-transform/*", LOCK_FILE)


class ManifestError(command_line.UserError):
    """A folder that is not a complete dataset; ``str()`` is one line naming it."""

    def __init__(self, folder: str, problem: str):
        super().__init__("%s: %s" % (folder, problem))
        self.folder = folder
        self.problem = problem


def _fs():
    from apache_beam.io.filesystems import FileSystems
    return FileSystems


def _check_served(folder: str) -> None:
    """A folder on a storage ``atomic_storage`` does not serve (s3://, hdfs://,
    ...) is refused in one line, never read or written as a local path."""
    import atomic_storage
    try:
        atomic_storage.check_served(folder)
    except atomic_storage.UnsupportedStorage as e:
        raise ManifestError(folder, str(e)) from None


def _path(folder: str, name: str) -> str:
    return _fs().join(folder.rstrip("/"), name)


def list_files(folder: str) -> dict[str, int]:
    """Every file under ``folder`` (recursively) -> its size, by relative path."""
    fs = _fs()
    base = folder.rstrip("/")
    if "://" not in base and not fs.exists(base):   # an object store has no folders to test
        return {}
    try:
        found = fs.match([fs.join(base, "**")])[0].metadata_list
    except Exception:  # Beam raises when nothing matches
        return {}
    out = {}
    for m in found:
        rel = m.path[len(base):].lstrip("/")
        if rel and not m.path.endswith("/"):
            out[rel] = m.size_in_bytes
    return out


def crc32c(path: str) -> str:
    """CRC-32C of a file as 8 hex digits. On gs:// the object's own CRC-32C
    (which GCS checks on upload) is read from its metadata: no data is read."""
    if path.startswith("gs://"):
        return base64.b64decode(_fs().checksum(path)).hex()
    import google_crc32c
    checksum = google_crc32c.Checksum()
    with _open(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            checksum.update(chunk)
    return checksum.hexdigest().decode("ascii")


def code_version() -> dict:
    """The package version and, from a git checkout, the commit (``+dirty`` if edited)."""
    try:
        from importlib.metadata import version
        package = version("quickdraw-pipeline")
    except Exception:
        package = None
    commit = None
    root = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        if commit and dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": package, "commit": commit}


def _write_atomically(path: str, data: bytes) -> None:
    import atomic_storage
    atomic_storage.replace(path, data)


def invalidate(folder: str) -> None:
    """Marks ``folder`` as being rewritten, in one step: the old manifest is
    replaced by an incomplete one, so a run killed from here on leaves a folder
    that :func:`verify` refuses."""
    _check_served(folder)
    fs = _fs()
    base = folder.rstrip("/")
    if not fs.exists(base):
        fs.mkdirs(base)
    _write_atomically(_path(base, MANIFEST_FILE), _dumps({"format": FORMAT, "complete": False}))


def _dumps(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_manifest(folder: str, manifest: dict) -> None:
    """Lists every file of ``folder`` with its size and CRC-32C, adds them to
    ``manifest`` (counts, options, seed, code version) and writes manifest.json
    atomically. The run's last write: nothing may change the folder after it.
    Holds no time stamp, so that identical runs have identical manifests (and digests)."""
    _check_served(folder)
    files = {rel: size for rel, size in list_files(folder).items()
             if rel != MANIFEST_FILE and not is_lock(rel)}
    leftovers = [rel for rel in files if _is_temporary(rel)]
    if leftovers:
        raise ManifestError(folder, "temporary file %s is still there: the run is not finished"
                            % leftovers[0])
    doc = dict(manifest)
    doc["format"] = FORMAT
    doc["complete"] = True
    doc["files"] = {rel: {"size": size, "crc32c": crc32c(_path(folder, rel))}
                    for rel, size in sorted(files.items())}
    _write_atomically(_path(folder, MANIFEST_FILE), _dumps(doc))


def is_lock(rel: str) -> bool:
    """The lock of a running pipeline, or a temporary file of its creation."""
    return rel == LOCK_FILE or (rel.startswith("." + LOCK_FILE + ".") and rel.endswith(".tmp"))


def _is_temporary(rel: str) -> bool:
    """A name a run writes under before renaming, or in a temporary folder."""
    return any(fnmatch.fnmatchcase(part, p) for part in rel.split("/") for p in TEMPORARY_PATTERNS)


def _is_pipeline_folder(files: dict[str, int]) -> bool:
    return any(fnmatch.fnmatchcase(rel, pattern) for rel in files for pattern in _PIPELINE_MARKERS)


def _read_raw(folder: str) -> bytes | None:
    fs = _fs()
    path = _path(folder, MANIFEST_FILE)
    if not fs.exists(path):
        return None
    try:
        with _open(path) as f:
            return f.read()
    except OSError as e:  # a folder of that name, a FIFO, no permission
        raise ManifestError(folder, "%s cannot be read: %s" % (MANIFEST_FILE, e.strerror or e)) from None


def _open(path: str):
    """A dataset's file opened for reading; a local one only if it is a regular
    file (a FIFO would block the reader, a device never end)."""
    if "://" not in path:
        return local_files.open_regular(path)
    return _fs().open(path, compression_type="uncompressed")


def read_manifest(folder: str, raw: bytes | None = None) -> dict | None:
    """The parsed manifest.json of ``folder``, None if there is none."""
    raw = _read_raw(folder) if raw is None else raw
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ManifestError(folder, "%s is not valid JSON" % MANIFEST_FILE) from None
    if not isinstance(doc, dict):
        raise ManifestError(folder, "%s is not a JSON object" % MANIFEST_FILE)
    return doc


def verify(folder: str, checksums: bool = True) -> dict | None:
    """The manifest of a complete dataset, after checking that the folder holds
    exactly its files with their sizes (and checksums unless ``checksums=False``).

    None: the folder has no manifest and nothing only the pipeline writes (a
    dataset made by the tutorial's create_dataset.py). Raises ManifestError for
    anything else that is not a complete dataset."""
    _check_served(folder)
    # A run's temporary names are never read; a retried attempt's late twin
    # (a zombie on another worker) may still write one after the manifest.
    files = {rel: size for rel, size in list_files(folder).items() if not is_lock(rel) and not _is_temporary(rel)}
    doc = read_manifest(folder)
    if doc is None:
        if not files:
            raise ManifestError(folder, "no dataset here (the folder is empty or missing)")
        if _is_pipeline_folder(files):
            raise ManifestError(folder, "pipeline output without %s: the run that wrote it did not "
                                "finish; run the pipeline again" % MANIFEST_FILE)
        return None
    if doc.get("format") != FORMAT:
        raise ManifestError(folder, "%s has format %r, this code reads %d"
                            % (MANIFEST_FILE, doc.get("format"), FORMAT))
    if not doc.get("complete"):
        raise ManifestError(folder, "incomplete dataset: a pipeline run started writing here and "
                            "did not finish (killed, failed or still running); run it again")
    listed = doc.get("files")
    if not isinstance(listed, dict):
        raise ManifestError(folder, "%s lists no files" % MANIFEST_FILE)
    damaged = sorted(rel for rel, entry in listed.items() if not isinstance(entry, dict))
    if damaged:
        raise ManifestError(folder, "%s's entry for %s is not an object: the manifest is damaged"
                            % (MANIFEST_FILE, damaged[0]))
    files.pop(MANIFEST_FILE, None)
    missing = sorted(set(listed) - set(files))
    if missing:
        raise ManifestError(folder, "%s is missing (%d file%s listed in %s are absent)" % (
            missing[0], len(missing), "" if len(missing) == 1 else "s", MANIFEST_FILE))
    extra = sorted(set(files) - set(listed))
    if extra:
        raise ManifestError(folder, "%s is not listed in %s (%d unlisted file%s): it does not "
                            "belong to this dataset" % (extra[0], MANIFEST_FILE, len(extra),
                                                        "" if len(extra) == 1 else "s"))
    for rel, entry in sorted(listed.items()):
        if files[rel] != entry.get("size"):
            raise ManifestError(folder, "%s has %d bytes, %s says %s" % (
                rel, files[rel], MANIFEST_FILE, entry.get("size")))
    if checksums:
        for rel, entry in sorted(listed.items()):
            try:
                actual = crc32c(_path(folder, rel))
            except OSError as e:
                raise ManifestError(folder, "%s cannot be read: %s" % (rel, e.strerror or e)) from None
            if actual != entry.get("crc32c"):
                raise ManifestError(folder, "%s has CRC-32C %s, %s says %s" % (
                    rel, actual, MANIFEST_FILE, entry.get("crc32c")))
    return doc


def digest(folder: str) -> str:
    """SHA-256 (hex) of the folder's manifest.json: the identity of a complete
    dataset (same files, counts, options and code -> same digest)."""
    _check_served(folder)
    raw = _read_raw(folder)
    doc = read_manifest(folder, raw) if raw is not None else None
    if doc is None or not doc.get("complete"):
        raise ManifestError(folder, "no complete %s to take a digest of" % MANIFEST_FILE)
    return hashlib.sha256(raw).hexdigest()
