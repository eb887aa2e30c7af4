"""The registry's JSON records: their file names, the shape each is checked
against when read, and how they are read, written whole and updated.

A damaged record (not JSON, a missing field, a wrong type) is a
``RegistryError`` naming the file and what is wrong, so that no reader fails
later with a bare ``KeyError``. An update is a read, a change and a
compare-and-swap, repeated until no other writer came between, so that
concurrent updates of one record all land.
"""
from __future__ import annotations

import datetime
import json
import os
import time
import uuid
from typing import Any, Callable

import folder_lock
from atomic_outputs import write_atomically
from deploy import json_shapes
from deploy import registry_files as files
from tfrecord_schema import STATS_FILE

RUN_FILE = "run.json"
EVAL_REPORT_FILE = "eval_report.json"
FIXED_EVAL_FILE = "fixed_eval.json"
CURRENT_FILE = "current"


class RegistryError(Exception):
    """A registry that is missing, inconsistent, or asked for a bad version."""


_TEXT, _INT, _NUMBER, _FLAG, _LIST, _ANY = json_shapes.LEAVES
_MEASURED = {"accuracy": _NUMBER}
_VERDICT = {"promoted": _FLAG, "reason": _TEXT}

# What the code reads from each record, by file name (``deploy.json_shapes``).
RECORD_SHAPES: dict[str, dict[str, Any]] = {
    RUN_FILE: {"version": _TEXT, "steps": {"*": {
        "status?": _TEXT, "classes?": [_TEXT],
        "owner?": {"host?": _TEXT, "pid?": _INT, "time?": _NUMBER, "boot_id?": _TEXT,
                   "pid_ns?": _TEXT}}}},
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


def _parse_json(path: str, data: bytes) -> dict[str, Any]:
    """The record at ``path``, or a ``RegistryError`` saying what is wrong."""
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


def dumps(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None if there is no file."""
    found = files.read_versioned(path)
    return None if found is None else _parse_json(path, found[0])


def read_json_versioned(path: str) -> tuple[dict[str, Any], object] | None:
    found = files.read_versioned(path)
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
        if files.compare_and_swap(path, token, dumps(value)):
            return value
    raise RegistryError("%s: 100 concurrent writers in a row; giving up"
                        % what)


def owner() -> dict[str, Any]:
    """Who is writing: enough to tell a live process from a dead one on the
    same machine (its host, boot and PID namespace: ``folder_lock.where``)."""
    here = {key: value for key, value in folder_lock.where().items() if value is not None}
    return dict(here, pid=os.getpid(), time=time.time(), claim=uuid.uuid4().hex)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
