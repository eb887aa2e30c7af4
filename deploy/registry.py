"""The model registry: every dataset and model version, its reports, and the
``current`` pointer.

Layout under the registry root (a local directory or a ``gs://`` prefix)::

    datasets/<version>/            pipeline output for that version
    models/<version>/train/        checkpoints and the trainer's own report
    models/<version>/export/       the SavedModel
    models/<version>/run.json      what each retrain step did, or why it failed
    models/<version>/eval_report.json   the promotion gate's evaluation
    fixed_eval.json                the eval set every candidate is judged on
    current                        names the promoted version

Versions are never deleted or rewritten once promoted. ``current`` is the only
file that changes meaning, and it is replaced in one step: a rename on local
disks, a single object upload on object stores, so a reader sees either the
old pointer or the new one and a crash leaves the old one in place.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
import uuid
from typing import Any

DATASETS = "datasets"
MODELS = "models"
TRAIN = "train"
EXPORT = "export"
RUN_FILE = "run.json"
EVAL_REPORT_FILE = "eval_report.json"
FIXED_EVAL_FILE = "fixed_eval.json"
CURRENT_FILE = "current"
OBJECT_STORES = ("gs://", "s3://")

VERSION_FORMAT = "%Y%m%d-%H%M%S"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(Exception):
    """A registry that is missing, inconsistent, or asked for a bad version."""


def new_version_id(now: datetime.datetime | None = None) -> str:
    """A dated version id such as ``20260122-031500`` (UTC), sortable by time."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime(VERSION_FORMAT)


def check_version_id(version: str) -> str:
    """Returns ``version`` if it is safe to use as a path component."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise RegistryError(
            "bad version id %r: use letters, digits, '.', '_' or '-' "
            "(at most 64), e.g. %s" % (version, new_version_id()))
    return version


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
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


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
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    import glob as local_glob
    return sorted(local_glob.glob(pattern))


def read_text(path: str) -> str:
    if is_remote(path):
        with _gfile().GFile(path, "r") as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_text_atomic(path: str, text: str) -> None:
    """Replaces ``path`` so that readers never see a partial file.

    Local: write a temporary file in the same directory, fsync, rename over.
    Object stores: one upload of the whole object (GCS makes an object visible
    only once its upload completes), never a copy-then-delete rename.
    Other TensorFlow filesystems (hdfs://, ram://): a temporary file renamed
    over the old one.
    """
    if path.startswith(OBJECT_STORES):
        with _gfile().GFile(path, "w") as f:
            f.write(text)
        return
    if is_remote(path):
        tmp = "%s.tmp-%s" % (path, uuid.uuid4().hex)
        with _gfile().GFile(tmp, "w") as f:
            f.write(text)
        _gfile().rename(tmp, path, overwrite=True)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path),
                               suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None if there is no file."""
    if not exists(path):
        return None
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise RegistryError("%s is not valid JSON: %s" % (path, e)) from e
    if not isinstance(value, dict):
        raise RegistryError("%s should hold a JSON object" % path)
    return value


def write_json_atomic(path: str, value: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


class Registry:
    """Paths and records of one registry root; holds no state of its own, so
    separate processes (Airflow tasks, Vertex jobs) can share a root."""

    def __init__(self, root: str):
        if not root:
            raise RegistryError("the registry root is empty")
        self.root = root if is_remote(root) else os.path.abspath(root)

    # Paths.
    def dataset_dir(self, version: str) -> str:
        return join(self.root, DATASETS, check_version_id(version))

    def model_dir(self, version: str) -> str:
        return join(self.root, MODELS, check_version_id(version))

    def train_dir(self, version: str) -> str:
        return join(self.model_dir(version), TRAIN)

    def export_dir(self, version: str) -> str:
        return join(self.model_dir(version), EXPORT)

    def run_path(self, version: str) -> str:
        return join(self.model_dir(version), RUN_FILE)

    def eval_report_path(self, version: str) -> str:
        return join(self.model_dir(version), EVAL_REPORT_FILE)

    @property
    def current_path(self) -> str:
        return join(self.root, CURRENT_FILE)

    @property
    def fixed_eval_path(self) -> str:
        return join(self.root, FIXED_EVAL_FILE)

    # Versions.
    def versions(self) -> list[str]:
        """Model versions that have a run record, oldest first."""
        return [v for v in listdir(join(self.root, MODELS))
                if _VERSION_RE.match(v) and exists(self.run_path(v))]

    def new_version(self, version: str | None = None,
                    dataset_exists_ok: bool = False) -> str:
        """Claims a fresh version id and writes its first run record."""
        version = check_version_id(version or new_version_id())
        if exists(self.run_path(version)) or (
                exists(self.dataset_dir(version)) and not dataset_exists_ok):
            raise RegistryError(
                "version %s already exists in %s; pick another --version"
                % (version, self.root))
        makedirs(self.model_dir(version))
        write_json_atomic(self.run_path(version), {
            "version": version, "created_at": utc_now(), "steps": {}})
        return version

    # Run records.
    def read_run(self, version: str) -> dict[str, Any]:
        run = read_json(self.run_path(version))
        if run is None:
            raise RegistryError(
                "no version %s in %s (known: %s)"
                % (version, self.root, ", ".join(self.versions()) or "none"))
        return run

    def record_step(self, version: str, step: str, fresh: bool = False,
                    **fields: Any) -> dict:
        """Merges ``fields`` into the record of ``step`` (or starts it afresh)
        and stamps the time."""
        run = self.read_run(version)
        entry = {} if fresh else dict(run["steps"].get(step, {}))
        entry.update(fields)
        entry["updated_at"] = utc_now()
        run["steps"][step] = entry
        write_json_atomic(self.run_path(version), run)
        return entry

    def step_status(self, version: str, step: str) -> str | None:
        return self.read_run(version)["steps"].get(step, {}).get("status")

    # Eval reports.
    def write_eval_report(self, version: str, report: dict[str, Any]) -> None:
        write_json_atomic(self.eval_report_path(version), report)

    def read_eval_report(self, version: str) -> dict[str, Any] | None:
        return read_json(self.eval_report_path(version))

    # The fixed eval set.
    def fixed_eval(self) -> dict[str, Any] | None:
        return read_json(self.fixed_eval_path)

    def set_fixed_eval(self, eval_data: str, classes_file: str,
                       source: str) -> dict[str, Any]:
        record = {"eval_data": eval_data, "classes_file": classes_file,
                  "source": source, "recorded_at": utc_now()}
        write_json_atomic(self.fixed_eval_path, record)
        return record

    # The current pointer.
    def current(self) -> dict[str, Any] | None:
        """The pointer record, or None before the first promotion."""
        pointer = read_json(self.current_path)
        if pointer is not None and "version" not in pointer:
            raise RegistryError("%s names no version" % self.current_path)
        return pointer

    def current_version(self) -> str | None:
        pointer = self.current()
        return pointer["version"] if pointer else None

    def set_current(self, version: str, **details: Any) -> dict[str, Any]:
        """Points ``current`` at ``version`` in one atomic replacement."""
        export_dir = self.export_dir(version)
        if not exists(export_dir):
            raise RegistryError("version %s has no export at %s"
                                % (version, export_dir))
        pointer = {"version": version, "export_dir": export_dir,
                   "promoted_at": utc_now()}
        pointer.update(details)
        write_json_atomic(self.current_path, pointer)
        return pointer
