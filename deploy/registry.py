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
writers racing for it exactly one wins (an exclusive create or a
compare-and-swap: ``deploy.registry_files``):

- a version exists once its ``run.json`` is created, exclusively;
- ``fixed_eval.json`` is created exclusively by the first evaluation, and
  replaced only by a compare-and-swap on an explicit renewal;
- ``current`` moves only by a compare-and-swap against the pointer the
  promotion was judged against. It lists every version ever promoted
  (``history``) with its accuracy, so "promoted" and "best promoted" are
  read from the one record that changes atomically.

Promoted versions are never rewritten. Other schemes that ``tf.io.gfile``
reads (hdfs://, ram://, s3://) work for one run at a time: their records are
replaced whole, but two writers there are not kept apart. Each record's file
name and shape, and how records are read and updated, are in
``deploy.registry_records``.
"""
from __future__ import annotations

import datetime
import os
import re
import uuid
from typing import Any, Callable

from deploy import registry_files as files
from deploy import registry_records as records
from deploy.registry_files import join
from deploy.registry_records import (CURRENT_FILE, EVAL_REPORT_FILE, FIXED_EVAL_FILE,
                                     RUN_FILE, RegistryError)

DATASETS = "datasets"
MODELS = "models"
TRAIN = "train"
EXPORT = "export"

VERSION_FORMAT = "%Y%m%d-%H%M%S"
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SAME_SECOND = 99   # dated ids taken in one second: -2, -3, ... up to this


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


class Registry:
    """Paths and records of one registry root; holds no state of its own, so
    separate processes (Airflow tasks, Vertex jobs) can share a root."""

    def __init__(self, root: str):
        if not root:
            raise RegistryError("the registry root is empty")
        self.root = root if files.is_remote(root) else os.path.abspath(root)

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
        return [v for v in files.listdir(join(self.root, MODELS))
                if _VERSION_RE.fullmatch(v) and files.exists(self.run_path(v))]

    def _claim(self, version: str) -> bool:
        """Creates the version's run record; False if it already had one."""
        return files.create_exclusive(self.run_path(version), records.dumps({
            "version": version, "created_at": records.utc_now(), "steps": {},
            "created_by": records.owner()}))

    def new_version(self, version: str | None = None,
                    dataset_exists_ok: bool = False) -> str:
        """Claims a fresh version id (exclusively: of runs racing for one id,
        one gets it) and writes its first run record. Without ``version``,
        the dated id of now, or ``<id>-2``, ``<id>-3``... if runs started in
        the same second took it."""
        if version is not None:
            check_version_id(version)
            if not dataset_exists_ok and files.exists(self.dataset_dir(version)):
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
            if not files.exists(self.dataset_dir(candidate)) and \
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
        run = records.read_json(self.run_path(version))
        if run is None:
            raise RegistryError(
                "no version %s in %s (known: %s)"
                % (version, self.root, ", ".join(self.versions()) or "none"))
        return run

    def update_run(self, version: str,
                   change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        self.read_run(version)  # names the version if it is unknown
        return records.update_json(self.run_path(version), change,
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
            entry["updated_at"] = records.utc_now()
            run["steps"][step] = dict(entry)
        self.update_run(version, change)
        return entry

    def step_status(self, version: str, step: str) -> str | None:
        return self.read_run(version)["steps"].get(step, {}).get("status")

    # Eval reports.
    def write_eval_report(self, version: str, report: dict[str, Any]) -> None:
        records.write_json_atomic(self.eval_report_path(version), report)

    def read_eval_report(self, version: str) -> dict[str, Any] | None:
        return records.read_json(self.eval_report_path(version))

    # The fixed eval set.
    def fixed_eval(self) -> dict[str, Any] | None:
        return records.read_json(self.fixed_eval_path)

    def fixed_eval_versioned(self) -> tuple[dict[str, Any], object] | None:
        return records.read_json_versioned(self.fixed_eval_path)

    def set_fixed_eval(self, eval_data: str, classes_file: str, source: str,
                       token: object = None,
                       **definition: Any) -> dict[str, Any] | None:
        """Records the eval set if ``fixed_eval.json`` is still the version
        ``token`` names (None: if there is none yet). Returns the record, or
        None if another run recorded one first."""
        record = {"eval_data": eval_data, "classes_file": classes_file,
                  "source": source, "recorded_at": records.utc_now(),
                  "id": uuid.uuid4().hex}
        record.update(definition)
        if files.compare_and_swap(self.fixed_eval_path, token, records.dumps(record)):
            return record
        return None

    # The current pointer.
    def current(self) -> dict[str, Any] | None:
        """The pointer record, or None before the first promotion."""
        found = self.current_versioned()
        return found[0] if found else None

    def current_versioned(self) -> tuple[dict[str, Any], object] | None:
        return records.read_json_versioned(self.current_path)

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
        if not files.exists(export_dir):
            raise RegistryError("version %s has no export at %s"
                                % (version, export_dir))
        found = self.current_versioned()
        before, now_token = found if found else (None, None)
        if now_token != token:
            return None
        promoted_at = records.utc_now()
        entry = {"version": version, "promoted_at": promoted_at}
        entry.update({k: details[k] for k in ("accuracy", "eval_set_id")
                      if k in details})
        pointer = {"version": version, "export_dir": export_dir,
                   "promoted_at": promoted_at, "promotion_id": uuid.uuid4().hex,
                   "previous": before["version"] if before else None,
                   "history": promotion_history(before) + [entry]}
        pointer.update({k: v for k, v in details.items()
                        if k not in ("previous", "history")})
        if files.compare_and_swap(self.current_path, token, records.dumps(pointer)):
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
