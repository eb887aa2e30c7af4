"""The dataset of a registry version: its files, and whether it is complete
enough to train on or to adopt (a pipeline launched outside the driver)."""
from __future__ import annotations

import re
from typing import Any

import dataset_manifest
import tfrecord_schema as schema
from deploy import registry_files, registry_records
from deploy.errors import RetrainError
from deploy.registry import Registry


def dataset_files(registry: Registry, version: str) -> dict[str, str]:
    base = registry.dataset_dir(version)
    return {
        "training_data": registry_files.join(base, schema.shard_pattern(schema.TRAIN)),
        "eval_data": registry_files.join(base, schema.shard_pattern(schema.EVAL)),
        "classes_file": registry_files.join(base, schema.CLASSES_FILE),
        "stats": registry_files.join(base, schema.STATS_FILE),
    }


def read_classes(path: str) -> list[str]:
    if not registry_files.exists(path):
        raise RetrainError("classes file %s does not exist" % path)
    try:
        return schema.parse_classes(registry_files.read_text(path))
    except ValueError as e:
        raise RetrainError("classes file %s: %s" % (path, e)) from e


def missing_shards(pattern: str) -> list[str]:
    """Shards of ``...-NNNNN-of-MMMMM`` that are absent (all, if none is there)."""
    found = registry_files.glob(pattern)
    if not found:
        return [pattern]
    numbers = [re.search(r"-(\d{5})-of-(\d{5})$", f) for f in found]
    total = int(numbers[0].group(2))
    present = {int(m.group(1)) for m in numbers if int(m.group(2)) == total}
    return [pattern.replace("?????-of-?????", "%05d-of-%05d" % (i, total))
            for i in range(total) if i not in present]


def check_dataset(registry: Registry, version: str,
                  checksums: bool = False) -> dict[str, Any]:
    """Fails in one line unless the dataset of ``version`` is complete: its
    manifest lists exactly the files there (with ``checksums``, their
    CRC-32C too), or, for a folder without one (the tutorial's script), every
    shard is there."""
    folder = registry.dataset_dir(version)
    try:
        dataset_manifest.verify(folder, checksums=checksums)
    except dataset_manifest.ManifestError as e:
        raise RetrainError("dataset %s is not usable: %s" % (version, e)) from None
    files = dataset_files(registry, version)
    missing = [files[k] for k in ("classes_file", "stats")
               if not registry_files.exists(files[k])]
    for key in ("training_data", "eval_data"):
        missing += missing_shards(files[key])
    if missing:
        raise RetrainError(
            "dataset %s is incomplete (did the pipeline finish?); missing: %s"
            % (version, ", ".join(missing)))
    return files


def adopt_dataset(registry: Registry, version: str) -> None:
    """Starts the record of a version whose dataset was written by a pipeline
    launched elsewhere (the Dataflow Flex Template in the Airflow DAG). Of
    two runs adopting it at once, one writes the record; both go on."""
    if not registry_files.exists(registry.dataset_dir(version)):
        raise RetrainError(
            "no version %s in %s: neither a run record nor a dataset"
            % (version, registry.root))
    files = check_dataset(registry, version)
    registry.adopt(version)
    if registry.step_status(version, "pipeline") != "done":
        registry.record_step(version, "pipeline", status="done",
                             dataset=registry.dataset_dir(version),
                             launched="outside the retrain driver",
                             stats=registry_records.read_json(files["stats"]))
