"""The model registry: every dataset and model version, its reports, and the
``current`` pointer.

Layout under the registry root (a local directory or a ``gs://`` prefix)::

    datasets/<version>/            pipeline output for that version
    models/<version>/train/        checkpoints and the trainer's own report
    models/<version>/export/       the SavedModel
    models/<version>/run.json      what each retrain step did, or why it failed
    models/<version>/eval_report.json   the promotion gate's evaluation
    fixed_eval.json                the eval set every candidate is judged on
    current                        the promoted version, and every earlier one

Three writes decide what the registry means, and each is made so that of
writers racing for it exactly one wins (``atomic_storage``: an exclusive
create or a compare-and-swap; ``O_EXCL``-like links and a folder lock on
local disks, generation preconditions on gs://):

- a version exists once its ``run.json`` is created, exclusively;
- ``fixed_eval.json`` is created exclusively by the first evaluation, and
  replaced only by a compare-and-swap on an explicit renewal;
- ``current`` moves only by a compare-and-swap against the pointer the
  promotion was judged against. It lists every version ever promoted
  (``history``) with its accuracy, so "promoted" and "best promoted" are
  read from the one record that changes atomically.

Promoted versions are never rewritten. Other schemes that ``tf.io.gfile``
reads (hdfs://, ram://, s3://) work for one run at a time: their records are
replaced whole, but two writers there are not kept apart.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import socket
import time
import uuid
from typing import Any, Callable

import atomic_storage
from atomic_outputs import write_atomically
from deploy import json_shapes
from tfrecord_schema import STATS_FILE

DATASETS = "datasets"
MODELS = "models"
TRAIN = "train"
EXPORT = "export"
RUN_FILE = "run.json"
EVAL_REPORT_FILE = "eval_report.json"
FIXED_EVAL_FILE = "fixed_eval.json"
CURRENT_FILE = "current"

VERSION_FORMAT = "%Y%m%d-%H%M%S"
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SAME_SECOND = 99   # dated ids taken in one second: -2, -3, ... up to this


class RegistryError(Exception):
    """A registry that is missing, inconsistent, or asked for a bad version."""


def new_version_id(now: datetime.datetime | None = None) -> str:
    """A dated version id such as ``20260122-031500`` (UTC), sortable by time."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime(VERSION_FORMAT)


def check_version_id(version: str) -> str:
    """Returns ``version`` if it is safe to use as a path component."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
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


def _parse_json(path: str, data: bytes) -> dict[str, Any]:
    """The record at ``path``; a ``RegistryError`` naming the file and what is
    wrong (not JSON, a missing field, a wrong type) when it is damaged, so
    that no reader fails later with a bare ``KeyError``."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        reason = str(e).splitlines()[0] if str(e) else "nested too deeply"
        raise RegistryError("%s is not valid JSON: %s" % (path, reason)) from e
    shape = RECORD_SHAPES.get(path.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1], {})
    problem = json_shapes.first_difference(value, shape)
    if problem:
        raise RegistryError("%s is damaged: %s" % (path, problem))
    return value


_TEXT, _INT, _NUMBER, _FLAG, _LIST, _ANY = json_shapes.LEAVES
_MEASURED = {"accuracy": _NUMBER}
_VERDICT = {"promoted": _FLAG, "reason": _TEXT}

# What the code reads from each record, by file name (``deploy.json_shapes``).
RECORD_SHAPES: dict[str, dict[str, Any]] = {
    RUN_FILE: {"version": _TEXT, "steps": {"*": {
        "status?": _TEXT, "classes?": [_TEXT],
        "owner?": {"host?": _TEXT, "pid?": _INT, "time?": _NUMBER}}}},
    CURRENT_FILE: {"version": _TEXT, "export_dir?": _TEXT, "promoted_at?": _TEXT,
                   "promotion_id?": _TEXT, "previous?": _TEXT, "accuracy?": _NUMBER,
                   "eval_set_id?": _TEXT, "history?": [{
                       "version": _TEXT, "promoted_at?": _TEXT, "accuracy?": _NUMBER,
                       "eval_set_id?": _TEXT}]},
    FIXED_EVAL_FILE: {"eval_data": _TEXT, "classes_file": _TEXT, "source?": _TEXT,
                      "id?": _TEXT, "manifest_digest?": _TEXT, "seed?": _INT,
                      "split_options?": {"*": _ANY}, "train_observations_per_class?": _INT},
    EVAL_REPORT_FILE: {"version?": _TEXT, "eval_set?": {"eval_data": _TEXT, "id?": _TEXT},
                       "candidate?": _MEASURED, "current?": _MEASURED,
                       "current_version?": _TEXT, "current_key?": _LIST,
                       "best?": {"version": _TEXT, "accuracy": _NUMBER},
                       "gate?": _VERDICT, "decision?": _VERDICT},
    STATS_FILE: {"classes?": {"*": {"selected?": {"*": _INT}}}},
}


def dumps(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None if there is no file."""
    found = read_versioned(path)
    return None if found is None else _parse_json(path, found[0])


def read_json_versioned(path: str) -> tuple[dict[str, Any], object] | None:
    found = read_versioned(path)
    return None if found is None else (_parse_json(path, found[0]), found[1])


def write_json_atomic(path: str, value: dict[str, Any]) -> None:
    """Replaces the record at ``path`` whole (``atomic_outputs``)."""
    write_atomically(path, dumps(value))


def update_json(path: str, change: Callable[[dict[str, Any]], None],
                what: str) -> dict[str, Any]:
    """Read, change, compare-and-swap, until no other writer came between:
    concurrent updates of one record all land."""
    for _ in range(100):
        found = read_json_versioned(path)
        if found is None:
            raise RegistryError("%s disappeared while updating it" % path)
        value, token = found
        change(value)
        if compare_and_swap(path, token, dumps(value)):
            return value
    raise RegistryError("%s: 100 concurrent writers in a row; giving up"
                        % what)


def owner() -> dict[str, Any]:
    """Who is writing: enough to tell a live process from a dead one on the
    same machine."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "time": time.time(), "claim": uuid.uuid4().hex}


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
                if _VERSION_RE.fullmatch(v) and exists(self.run_path(v))]

    def _claim(self, version: str) -> bool:
        """Creates the version's run record; False if it already had one."""
        return create_exclusive(self.run_path(version), dumps({
            "version": version, "created_at": utc_now(), "steps": {},
            "created_by": owner()}))

    def new_version(self, version: str | None = None,
                    dataset_exists_ok: bool = False) -> str:
        """Claims a fresh version id (exclusively: of runs racing for one id,
        one gets it) and writes its first run record. Without ``version``,
        the dated id of now, or ``<id>-2``, ``<id>-3``... if runs started in
        the same second took it."""
        if version is not None:
            check_version_id(version)
            if not dataset_exists_ok and exists(self.dataset_dir(version)):
                raise RegistryError(
                    "version %s already exists in %s; pick another --version"
                    % (version, self.root))
            if not self._claim(version):
                raise RegistryError(
                    "version %s already exists in %s; pick another --version"
                    % (version, self.root))
            return version
        base = new_version_id()
        for n in range(1, MAX_SAME_SECOND + 1):
            candidate = base if n == 1 else "%s-%d" % (base, n)
            if not exists(self.dataset_dir(candidate)) and \
                    self._claim(candidate):
                return candidate
        raise RegistryError("%d versions were created in the second %s"
                            % (MAX_SAME_SECOND, base))

    def adopt(self, version: str) -> bool:
        """Starts the record of a version whose dataset exists already (written
        by a pipeline launched elsewhere). False if it had one."""
        return self._claim(check_version_id(version))

    # Run records.
    def read_run(self, version: str) -> dict[str, Any]:
        run = read_json(self.run_path(version))
        if run is None:
            raise RegistryError(
                "no version %s in %s (known: %s)"
                % (version, self.root, ", ".join(self.versions()) or "none"))
        return run

    def update_run(self, version: str,
                   change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        self.read_run(version)  # names the version if it is unknown
        return update_json(self.run_path(version), change,
                           "run record of %s" % version)

    def record_step(self, version: str, step: str, fresh: bool = False,
                    **fields: Any) -> dict:
        """Merges ``fields`` into the record of ``step`` (or starts it afresh)
        and stamps the time; a compare-and-swap, so concurrent records of
        other steps are kept."""
        entry: dict[str, Any] = {}

        def change(run: dict[str, Any]) -> None:
            entry.clear()
            entry.update({} if fresh else run["steps"].get(step, {}))
            entry.update(fields)
            entry["updated_at"] = utc_now()
            run["steps"][step] = dict(entry)
        self.update_run(version, change)
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

    def fixed_eval_versioned(self) -> tuple[dict[str, Any], object] | None:
        return read_json_versioned(self.fixed_eval_path)

    def set_fixed_eval(self, eval_data: str, classes_file: str, source: str,
                       token: object = None,
                       **definition: Any) -> dict[str, Any] | None:
        """Records the eval set if ``fixed_eval.json`` is still the version
        ``token`` names (None: if there is none yet). Returns the record, or
        None if another run recorded one first."""
        record = {"eval_data": eval_data, "classes_file": classes_file,
                  "source": source, "recorded_at": utc_now(),
                  "id": uuid.uuid4().hex}
        record.update(definition)
        if compare_and_swap(self.fixed_eval_path, token, dumps(record)):
            return record
        return None

    # The current pointer.
    def current(self) -> dict[str, Any] | None:
        """The pointer record, or None before the first promotion."""
        found = self.current_versioned()
        return found[0] if found else None

    def current_versioned(self) -> tuple[dict[str, Any], object] | None:
        return read_json_versioned(self.current_path)

    def current_version(self) -> str | None:
        pointer = self.current()
        return pointer["version"] if pointer else None

    def promoted(self, version: str) -> dict[str, Any] | None:
        """The promotion of ``version`` (from the pointer's history), or None
        if it was never promoted."""
        pointer = self.current()
        for entry in promotion_history(pointer):
            if entry["version"] == version:
                return entry
        return None

    def check_not_promoted(self, version: str, action: str) -> None:
        """Refuses, in one line, a write into a promoted version."""
        entry = self.promoted(version)
        if entry is not None:
            raise RegistryError(
                "version %s was promoted at %s and is never rewritten; %s "
                "needs a new version" % (version, entry.get("promoted_at"),
                                         action))

    def set_current(self, version: str, token: object = None,
                    **details: Any) -> dict[str, Any] | None:
        """Points ``current`` at ``version`` if the pointer is still the one
        ``token`` names (None: if nothing was promoted yet), in one atomic
        replacement. Returns the new pointer, or None if another promotion
        came first."""
        export_dir = self.export_dir(version)
        if not exists(export_dir):
            raise RegistryError("version %s has no export at %s"
                                % (version, export_dir))
        found = self.current_versioned()
        before, now_token = found if found else (None, None)
        if now_token != token:
            return None
        promoted_at = utc_now()
        entry = {"version": version, "promoted_at": promoted_at}
        entry.update({k: details[k] for k in ("accuracy", "eval_set_id")
                      if k in details})
        pointer = {"version": version, "export_dir": export_dir,
                   "promoted_at": promoted_at, "promotion_id": uuid.uuid4().hex,
                   "previous": before["version"] if before else None,
                   "history": promotion_history(before) + [entry]}
        pointer.update({k: v for k, v in details.items()
                        if k not in ("previous", "history")})
        if compare_and_swap(self.current_path, token, dumps(pointer)):
            return pointer
        return None


def promotion_history(pointer: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every promotion, oldest first, as the pointer records it. A pointer
    written before the history was kept counts as its own one entry."""
    if not pointer:
        return []
    if "history" in pointer:
        return list(pointer["history"])
    return [{"version": pointer["version"],
             "promoted_at": pointer.get("promoted_at"),
             "accuracy": pointer.get("accuracy")}]
