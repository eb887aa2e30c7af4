"""The fixed eval set every candidate is judged on, and what defined it: a
candidate whose dataset was split differently may have eval drawings in its
training split, so it is refused (or made the new fixed set on request)."""
from __future__ import annotations

import argparse
import os
from typing import Any

import dataset_manifest
import tfrecord_schema as schema
from deploy import registry_files, registry_records
from deploy.errors import Refused, RetrainError
from deploy.registry import Registry
from deploy.version_dataset import dataset_files

# Pipeline options that decide which drawing lands in which split. A
# candidate whose dataset differs from the fixed eval set's in one of them
# may have eval drawings in its training split.
SPLIT_OPTIONS = ("input", "seed", "recognized_only", "max_points", "max_bytes",
                 "max_strokes", "classes")


def dataset_definition(registry: Registry, version: str) -> dict[str, Any]:
    """What decided which drawing of ``version``'s dataset went to which
    split: the manifest's digest, seed and split options, the per-class
    eval counts. Empty for a dataset without a manifest."""
    folder = registry.dataset_dir(version)
    try:
        manifest = dataset_manifest.verify(folder, checksums=False)
    except dataset_manifest.ManifestError as e:
        raise RetrainError("dataset %s is not usable: %s" % (version, e)) from None
    if manifest is None:
        return {}
    options = manifest.get("options") or {}
    stats = registry_records.read_json(dataset_files(registry, version)["stats"]) or {}
    return {
        "dataset_version": version,
        "manifest_digest": dataset_manifest.digest(folder),
        "seed": manifest.get("seed", options.get("seed")),
        "split_options": {k: options.get(k) for k in SPLIT_OPTIONS
                          if k in options},
        "train_observations_per_class":
            options.get("train_observations_per_class"),
        "eval_observations_per_class":
            options.get("eval_observations_per_class"),
        "eval_counts": {c: v.get("selected", {}).get(schema.EVAL)
                        for c, v in sorted(stats.get("classes", {}).items())},
    }


def definition_differences(fixed: dict[str, Any],
                           candidate: dict[str, Any]) -> list[str]:
    """Why eval drawings of the fixed set may be in the candidate's training
    split: a different seed, input or filter, or a larger training split.
    Empty if there is no reason, or no manifest to tell."""
    if not fixed.get("manifest_digest") or not candidate.get("manifest_digest"):
        return []
    out = []
    if candidate.get("seed") != fixed.get("seed"):
        out.append("seed %r, the eval set's %r"
                   % (candidate.get("seed"), fixed.get("seed")))
    ours, theirs = candidate.get("split_options", {}), fixed.get("split_options", {})
    for name in SPLIT_OPTIONS:
        if name != "seed" and ours.get(name) != theirs.get(name):
            out.append("--%s %r, the eval set's %r"
                       % (name, ours.get(name), theirs.get(name)))
    mine = candidate.get("train_observations_per_class")
    limit = fixed.get("train_observations_per_class")
    if mine is not None and limit is not None and mine > limit:
        out.append("--train_observations_per_class %d, more than the eval "
                   "set's %d" % (mine, limit))
    return out


def fixed_eval_set(registry: Registry, version: str,
                   args: argparse.Namespace) -> dict[str, Any]:
    """The eval set to judge ``version`` on. The first evaluation records its
    own dataset's eval split (exclusively: racing first evaluations agree on
    one). A candidate built differently from the recorded set is refused,
    unless ``--renew_fixed_eval`` makes its eval split the new fixed set."""
    if args.fixed_eval_data:
        classes = args.fixed_eval_classes or registry_files.join(
            os.path.dirname(args.fixed_eval_data.rstrip("/")),
            schema.CLASSES_FILE)
        return {"eval_data": args.fixed_eval_data, "classes_file": classes,
                "source": "--fixed_eval_data", "id": None,
                "check": "not checked: an eval set given for this run"}
    definition = dataset_definition(registry, version)
    files = dataset_files(registry, version)
    while True:
        found = registry.fixed_eval_versioned()
        recorded, token = found if found else (None, None)
        if recorded is not None:
            differences = definition_differences(recorded, definition)
            if not differences:
                check = ("same split definition as the eval set's dataset"
                         if recorded.get("manifest_digest")
                         and definition.get("manifest_digest")
                         else "not checked: no manifest to compare")
                return dict(recorded, check=check)
            if not args.renew_fixed_eval:
                raise Refused(
                    "dataset %s was built differently from the fixed eval "
                    "set's (%s): %s; eval drawings may be in its training "
                    "split. Rebuild it the same way, or pass "
                    "--renew_fixed_eval to judge on its eval split from now on"
                    % (version, recorded.get("source"), "; ".join(differences)))
        record = registry.set_fixed_eval(
            files["eval_data"], files["classes_file"], "dataset %s" % version,
            token=token, **definition)
        if record is not None:
            return dict(record, check="recorded from this candidate's dataset"
                        + (" (renewed)" if recorded else ""))


def evaluate_export(export_dir: str, eval_data: str, classes_file: str,
                    batch_size: int) -> dict[str, Any]:
    """Metrics of one export on the eval set (tests replace this when the
    point is the registry, not the model)."""
    from trainer.evaluate import evaluate_saved_model
    return plain_metrics(evaluate_saved_model(export_dir, eval_data, classes_file,
                                       batch_size=batch_size))


def plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON numbers (the trainer may return numpy scalars)."""
    return {k: (v.item() if hasattr(v, "item") else v)
            for k, v in (metrics or {}).items()}
