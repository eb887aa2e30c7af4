"""Scheduled retraining: new dataset, new model, and a gate before it serves.

One run makes one dated version in the registry (see ``deploy.registry``):

1. ``pipeline``: runs the Beam pipeline on the current data into
   ``datasets/<version>``.
2. ``train``: verifies the dataset (its manifest), trains on it,
   warm-starting from the current model when the classes are the same, and
   exports a SavedModel.
3. ``evaluate``: evaluates the candidate and the current model on the same
   fixed eval set, after checking that the candidate's dataset was built the
   way the eval set's was (else no eval drawing is sure to be absent from its
   training split), and writes ``models/<version>/eval_report.json`` with the
   gate's checks.
4. ``promote``: moves ``current`` to the candidate only if it passes the gate
   (an absolute floor ``--min_accuracy``, and no more than
   ``--promotion_margin`` below the current model nor below the best model
   ever promoted), by a compare-and-swap against the pointer it was judged
   against: if another promotion came first, the candidate is evaluated again
   against the new current model.

``--step=all`` runs them in order in one process; each step can also run on
its own (``--step=train --version=...``) so a scheduler can put the pipeline
on Dataflow and training on Vertex AI. Every step records what it did, or why
it failed, in ``models/<version>/run.json``. A step that is done is not run
again (a re-run reports it done), a step killed midway runs again from its
start (training from its last checkpoint), and no step writes into a
promoted version. ``current`` is only ever written by a successful
promotion, so a failed or killed run leaves it untouched.

Exit status: 0 done (or promoted, now or before), 1 a step failed, 2 a bad
flag (one line), 3 the candidate was refused by the gate.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import sys
from typing import Any, Callable

import command_line
import dataset_manifest
import tfrecord_schema as schema
from deploy import registry as reg
from deploy.registry import Registry, RegistryError
from pipeline import console

STEPS = ("pipeline", "train", "evaluate", "promote")
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 3
DEFAULT_MARGIN = 0.02
DEFAULT_MIN_ACCURACY = 0.0
PROMOTION_ATTEMPTS = 10  # evaluations against a current model that moved

# Flags the retrain driver sets itself; passing them through would point the
# pipeline or trainer outside the registry.
PIPELINE_OWNED_FLAGS = ("--output", "--output_path")
TRAINER_OWNED_FLAGS = ("--training_data", "--eval_data", "--classes_file",
                       "--model_dir", "--export_dir", "--warm_start_from")

# Pipeline options that decide which drawing lands in which split. A
# candidate whose dataset differs from the fixed eval set's in one of them
# may have eval drawings in its training split.
SPLIT_OPTIONS = ("input", "seed", "recognized_only", "max_points", "max_bytes",
                 "max_strokes", "classes")


class RetrainError(Exception):
    """A step cannot run or did not produce what the next step needs."""


class Refused(Exception):
    """The gate refused the candidate; ``str()`` says why, in one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = command_line.Parser(
        "quickdraw-retrain", "deploy.retrain",
        description="Retrain the sketch classifier into a versioned registry "
                    "and promote it only if it passes the gate.")
    parser.add_argument("--registry", required=True,
                        help="Registry root: a local directory or gs:// prefix.")
    parser.add_argument("--step", choices=STEPS + ("all",), default="all",
                        help="Run one step, or all of them in order.")
    parser.add_argument("--version", default=None,
                        help="Version id. New runs get a dated one "
                             "(YYYYmmdd-HHMMSS, UTC); single steps after "
                             "'pipeline' need the id it printed. Given to "
                             "'pipeline' or 'all', an existing version's "
                             "unfinished steps are run.")
    parser.add_argument("--pipeline_flags", default="",
                        help="Flags for the pipeline, as one shell-quoted "
                             "string, e.g. \"--input=gs://... "
                             "--runner=DataflowRunner --project=...\". "
                             "--output is set to the dataset version.")
    parser.add_argument("--trainer_flags", default="",
                        help="Flags for the trainer, as one shell-quoted "
                             "string, e.g. \"--steps=100000 --batch_size=8\". "
                             "Data, model and export paths are set here.")
    parser.add_argument("--warm_start", choices=("auto", "never"),
                        default="auto",
                        help="auto: warm-start from the current model when "
                             "its classes equal the new dataset's.")
    parser.add_argument("--promotion_margin", type=float,
                        default=DEFAULT_MARGIN,
                        help="Promote only if candidate accuracy >= current "
                             "accuracy - margin and >= best promoted "
                             "accuracy - margin on the fixed eval set.")
    parser.add_argument("--min_accuracy", type=float,
                        default=DEFAULT_MIN_ACCURACY,
                        help="Promote only if candidate accuracy on the fixed "
                             "eval set is at least this.")
    parser.add_argument("--fixed_eval_data", default=None,
                        help="TFRecord pattern of the eval set to judge on "
                             "in this run. Default: the one recorded in the "
                             "registry, else the candidate dataset's eval "
                             "split (recorded at the first evaluation).")
    parser.add_argument("--fixed_eval_classes", default=None,
                        help="Classes file of --fixed_eval_data (default: "
                             "%s beside it)." % schema.CLASSES_FILE)
    parser.add_argument("--renew_fixed_eval", action="store_true",
                        help="Make the candidate dataset's eval split the "
                             "registry's fixed eval set, where its dataset "
                             "was built differently from the recorded one's "
                             "(another seed, filters, input or a larger "
                             "training split). Best-model comparisons then "
                             "restart on the new set.")
    parser.add_argument("--eval_batch_size", type=int, default=64)
    return parser


def _split_flags(text: str, owned: tuple[str, ...], what: str) -> list[str]:
    try:
        flags = shlex.split(text)
    except ValueError as e:
        raise RetrainError("cannot parse --%s_flags: %s" % (what, e)) from e
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in owned:
            raise RetrainError(
                "%s is set by the retrain driver; remove it from --%s_flags"
                % (name, what))
    return flags


def _dataset_files(registry: Registry, version: str) -> dict[str, str]:
    base = registry.dataset_dir(version)
    return {
        "training_data": reg.join(base, schema.shard_pattern(schema.TRAIN)),
        "eval_data": reg.join(base, schema.shard_pattern(schema.EVAL)),
        "classes_file": reg.join(base, schema.CLASSES_FILE),
        "stats": reg.join(base, schema.STATS_FILE),
    }


def read_classes(path: str) -> list[str]:
    if not reg.exists(path):
        raise RetrainError("classes file %s does not exist" % path)
    try:
        return schema.parse_classes(reg.read_text(path))
    except ValueError as e:
        raise RetrainError("classes file %s: %s" % (path, e)) from e


def _missing_shards(pattern: str) -> list[str]:
    """Shards of ``...-NNNNN-of-MMMMM`` that are absent (all, if none is there)."""
    found = reg.glob(pattern)
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
    files = _dataset_files(registry, version)
    missing = [files[k] for k in ("classes_file", "stats")
               if not reg.exists(files[k])]
    for key in ("training_data", "eval_data"):
        missing += _missing_shards(files[key])
    if missing:
        raise RetrainError(
            "dataset %s is incomplete (did the pipeline finish?); missing: %s"
            % (version, ", ".join(missing)))
    return files


def adopt_dataset(registry: Registry, version: str) -> None:
    """Starts the record of a version whose dataset was written by a pipeline
    launched elsewhere (the Dataflow Flex Template in the Airflow DAG). Of
    two runs adopting it at once, one writes the record; both go on."""
    if not reg.exists(registry.dataset_dir(version)):
        raise RetrainError(
            "no version %s in %s: neither a run record nor a dataset"
            % (version, registry.root))
    files = check_dataset(registry, version)
    registry.adopt(version)
    if registry.step_status(version, "pipeline") != "done":
        registry.record_step(version, "pipeline", status="done",
                             dataset=registry.dataset_dir(version),
                             launched="outside the retrain driver",
                             stats=reg.read_json(files["stats"]))


def run_pipeline(registry: Registry, version: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.run import run as run_beam_pipeline

    flags = _split_flags(args.pipeline_flags, PIPELINE_OWNED_FLAGS, "pipeline")
    output = registry.dataset_dir(version)
    stats = run_beam_pipeline(flags + ["--output=%s" % output])
    check_dataset(registry, version)
    return {"dataset": output, "flags": flags, "stats": stats}


def _is_chief() -> bool:
    """In multi-worker training every worker runs this step; only the chief
    records it (TF_CONFIG as set by Vertex AI and the TF operators)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def warm_start_source(registry: Registry, classes: list[str],
                      mode: str) -> tuple[str | None, str]:
    """The export to warm-start from, and why (or why not). The trainer
    refuses a source of another architecture with a clear error; retrain then
    with --warm_start=never."""
    if mode == "never":
        return None, "disabled by --warm_start=never"
    current = registry.current_version()
    if current is None:
        return None, "no current model"
    current_classes = registry.read_run(current)["steps"].get(
        "train", {}).get("classes")
    if current_classes != classes:
        return None, "classes differ from current model %s" % current
    return registry.export_dir(current), "current model %s" % current


def run_train(registry: Registry, version: str,
              args: argparse.Namespace) -> dict[str, Any]:
    from trainer.task import main as train_main

    files = check_dataset(registry, version, checksums=True)
    classes = read_classes(files["classes_file"])
    flags = _split_flags(args.trainer_flags, TRAINER_OWNED_FLAGS, "trainer")
    warm_from, warm_reason = warm_start_source(registry, classes,
                                               args.warm_start)
    argv = flags + [
        "--training_data=%s" % files["training_data"],
        "--eval_data=%s" % files["eval_data"],
        "--classes_file=%s" % files["classes_file"],
        "--model_dir=%s" % registry.train_dir(version),
        "--export_dir=%s" % registry.export_dir(version),
    ]
    if warm_from:
        argv.append("--warm_start_from=%s" % warm_from)
    if _is_chief():
        registry.record_step(version, "train", warm_start_from=warm_from,
                             warm_start_reason=warm_reason)
    metrics = train_main(argv)
    if _is_chief() and not reg.exists(registry.export_dir(version)):
        raise RetrainError("training finished but wrote no export at %s"
                           % registry.export_dir(version))
    return {"flags": flags, "classes": classes, "warm_start_from": warm_from,
            "warm_start_reason": warm_reason, "metrics": _plain(metrics)}


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON numbers (the trainer may return numpy scalars)."""
    return {k: (v.item() if hasattr(v, "item") else v)
            for k, v in (metrics or {}).items()}


# The fixed eval set and what defined it.

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
    stats = reg.read_json(_dataset_files(registry, version)["stats"]) or {}
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
        classes = args.fixed_eval_classes or reg.join(
            os.path.dirname(args.fixed_eval_data.rstrip("/")),
            schema.CLASSES_FILE)
        return {"eval_data": args.fixed_eval_data, "classes_file": classes,
                "source": "--fixed_eval_data", "id": None,
                "check": "not checked: an eval set given for this run"}
    definition = dataset_definition(registry, version)
    files = _dataset_files(registry, version)
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
    return _plain(evaluate_saved_model(export_dir, eval_data, classes_file,
                                       batch_size=batch_size))


def _pointer_key(pointer: dict[str, Any] | None) -> list[Any] | None:
    """Identifies one promotion (a rollback to an earlier version is another)."""
    if pointer is None:
        return None
    return [pointer["version"], pointer.get("promotion_id"),
            pointer.get("promoted_at")]


def best_promoted(pointer: dict[str, Any] | None, eval_set_id: str | None,
                  current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The most accurate version ever promoted, by the accuracy each had on
    this eval set when promoted (the current one as just measured)."""
    best = None
    for entry in reg.promotion_history(pointer):
        accuracy = entry.get("accuracy")
        if entry["version"] == (pointer or {}).get("version") and current:
            accuracy = current["accuracy"]
        elif eval_set_id is None or entry.get("eval_set_id") != eval_set_id:
            continue
        if accuracy is not None and (best is None
                                     or accuracy > best["accuracy"]):
            best = {"version": entry["version"], "accuracy": accuracy}
    return best


def run_evaluate(registry: Registry, version: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    if registry.step_status(version, "train") != "done":
        raise RetrainError("version %s has not finished training" % version)
    try:
        eval_set = fixed_eval_set(registry, version, args)
    except Refused as e:
        registry.write_eval_report(version, {
            "version": version, "evaluated_at": reg.utc_now(),
            "gate": {"promoted": False, "reason": str(e), "checks": []}})
        raise
    if not reg.glob(eval_set["eval_data"]):
        raise RetrainError("fixed eval set %s matches no files"
                           % eval_set["eval_data"])
    eval_classes = read_classes(eval_set["classes_file"])
    candidate_classes = registry.read_run(version)["steps"]["train"]["classes"]
    if candidate_classes != eval_classes:
        raise RetrainError(
            "the candidate's classes differ from the fixed eval set's (%s); "
            "a new set of classes needs a new registry"
            % eval_set["classes_file"])

    def evaluate(v: str) -> dict[str, Any]:
        return evaluate_export(registry.export_dir(v), eval_set["eval_data"],
                               eval_set["classes_file"], args.eval_batch_size)

    pointer = registry.current()
    report: dict[str, Any] = {
        "version": version, "eval_set": eval_set,
        "evaluated_at": reg.utc_now(),
        "candidate": evaluate(version),
        "current_version": pointer["version"] if pointer else None,
        "current_key": _pointer_key(pointer),
        "current": evaluate(pointer["version"]) if pointer else None,
    }
    report["best"] = best_promoted(pointer, eval_set.get("id"),
                                   report["current"])
    promoted, reason, checks = decide(report, args.promotion_margin,
                                      args.min_accuracy)
    report["gate"] = {"promoted": promoted, "reason": reason, "checks": checks,
                      "margin": args.promotion_margin,
                      "min_accuracy": args.min_accuracy}
    registry.write_eval_report(version, report)
    return {"eval_report": registry.eval_report_path(version),
            "candidate_accuracy": report["candidate"]["accuracy"],
            "current_accuracy": (report["current"] or {}).get("accuracy"),
            "gate": promoted}


_EPSILON = 1e-9   # 0.78 must pass 0.80 - 0.02 despite binary fractions


def decide(report: dict[str, Any], margin: float,
           min_accuracy: float = DEFAULT_MIN_ACCURACY
           ) -> tuple[bool, str, list[dict[str, Any]]]:
    """The promotion gate: an absolute floor, and no regression beyond the
    margin against the current model and against the best promoted one."""
    candidate = float(report["candidate"]["accuracy"])
    checks = [{"check": "min_accuracy", "threshold": min_accuracy,
               "passed": candidate >= min_accuracy - _EPSILON}]
    words = ["%s min_accuracy %.4f" % (
        ">=" if checks[0]["passed"] else "<", min_accuracy)]
    for name, version, measured in (
            ("current", report.get("current_version"), report.get("current")),
            ("best", (report.get("best") or {}).get("version"),
             report.get("best"))):
        if measured is None:
            checks.append({"check": name, "version": None, "passed": True,
                           "note": "no %s model" % name})
            words.append("no %s model" % name)
            continue
        accuracy = float(measured["accuracy"])
        passed = candidate >= accuracy - margin - _EPSILON
        checks.append({"check": name, "version": version,
                       "accuracy": accuracy, "margin": margin,
                       "threshold": accuracy - margin, "passed": passed})
        words.append("%s %s %s accuracy %.4f - margin %.4f" % (
            ">=" if passed else "<", name, version, accuracy, margin))
    promoted = all(c["passed"] for c in checks)
    return promoted, "candidate accuracy %.4f %s" % (
        candidate, ", ".join(words)), checks


def _finish_promotion(registry: Registry, version: str,
                      reason: str | None) -> dict[str, Any]:
    """Writes the decision into the eval report once ``current`` has moved
    (so a report never says "promoted" for a pointer that did not move)."""
    report = registry.read_eval_report(version) or {"version": version}
    decision = report.get("decision") or {}
    already = reason is None
    if not decision.get("promoted"):
        decision = {"promoted": True, "decided_at": reg.utc_now(),
                    "reason": reason or "promoted by an earlier run of this "
                    "step, whose record was cut short"}
        report["decision"] = decision
        registry.write_eval_report(version, report)
    return {"promoted": True, "reason": decision["reason"],
            "already": already}


def run_promote(registry: Registry, version: str,
                args: argparse.Namespace) -> dict[str, Any]:
    """Compare-and-swap of ``current``: judged against the pointer read,
    written only if it is still that pointer; else judged again."""
    if registry.step_status(version, "evaluate") != "done":
        raise RetrainError("version %s has not been evaluated" % version)
    for _ in range(PROMOTION_ATTEMPTS):
        found = registry.current_versioned()
        pointer, token = found if found else (None, None)
        if any(e["version"] == version
               for e in reg.promotion_history(pointer)):
            return _finish_promotion(registry, version, None)
        report = registry.read_eval_report(version)
        if report is None or "candidate" not in report:
            raise RetrainError("version %s has no eval report" % version)
        if report.get("current_key") != _pointer_key(pointer):
            print("retrain %s: current moved from %s to %s since the "
                  "evaluation; evaluating again" % (
                      version, report.get("current_version"),
                      pointer["version"] if pointer else None),
                  file=sys.stderr)
            registry.record_step(version, "evaluate", fresh=True,
                                 status="done", rerun_by="promote",
                                 **run_evaluate(registry, version, args))
            continue
        promoted, reason, checks = decide(report, args.promotion_margin,
                                          args.min_accuracy)
        if not promoted:
            report["decision"] = {
                "promoted": False, "reason": reason, "checks": checks,
                "margin": args.promotion_margin,
                "min_accuracy": args.min_accuracy,
                "decided_at": reg.utc_now()}
            registry.write_eval_report(version, report)
            return {"promoted": False, "reason": reason}
        moved = registry.set_current(
            version, token=token, accuracy=report["candidate"]["accuracy"],
            eval_set_id=report["eval_set"].get("id"),
            eval_data=report["eval_set"]["eval_data"])
        if moved is not None:
            return _finish_promotion(registry, version, reason)
        # Another promotion came between the read and the swap: judge again.
    raise RetrainError("current moved during each of %d evaluations of %s; "
                       "run the promote step again" % (PROMOTION_ATTEMPTS,
                                                       version))


STEP_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "pipeline": run_pipeline, "train": run_train,
    "evaluate": run_evaluate, "promote": run_promote,
}


def _alive_elsewhere(entry: dict[str, Any]) -> bool:
    """A step recorded as running by another process that is still alive on
    this machine (the same pid started later is another process). On another
    machine it cannot be told, and counts as dead: a scheduler runs one task
    per version at a time, and its retry may run anywhere."""
    from pipeline.output_folder import owner_is_gone
    who = entry.get("owner") or {}
    if entry.get("status") != "running" or who.get("host") != \
            socket.gethostname() or who.get("pid") == os.getpid():
        return False
    return not owner_is_gone(who)


def _start_step(registry: Registry, version: str, step: str) -> None:
    """Records the step as running by this process, unless another live one
    has it (a compare-and-swap, so of two starting at once one runs)."""
    def change(run: dict[str, Any]) -> None:
        entry = run["steps"].get(step, {})
        if _alive_elsewhere(entry):
            raise RetrainError(
                "step %s of version %s is running in process %s since %s"
                % (step, version, entry["owner"]["pid"],
                   entry.get("started_at")))
        run["steps"][step] = {"status": "running", "started_at": reg.utc_now(),
                              "updated_at": reg.utc_now(), "pid": os.getpid(),
                              "owner": reg.owner()}
    registry.update_run(version, change)


def run_step(registry: Registry, version: str, step: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """Runs one step and records its outcome; re-raises failures. A step
    already done is not run again; no other step runs on a promoted version
    but its promotion (which then only finishes its records)."""
    entry = registry.read_run(version)["steps"].get(step, {})
    if entry.get("status") == "done":
        print("retrain %s: %s was already done" % (version, step),
              file=sys.stderr)
        return dict(entry, already=True)
    if step != "promote":
        registry.check_not_promoted(version, "--step=%s" % step)
    record = step != "train" or _is_chief()
    if record:
        _start_step(registry, version, step)
    try:
        result = STEP_FUNCTIONS[step](registry, version, args)
    except Refused as e:
        registry.record_step(version, step, status="refused", reason=str(e))
        raise
    except BaseException as e:
        if record:
            registry.record_step(version, step, status="failed",
                                 error="%s: %s" % (type(e).__name__, e))
        raise
    if record:
        registry.record_step(version, step, status="done", **result)
    return result


def retrain(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Runs the requested steps; returns the version and the last result."""
    registry = Registry(args.registry)
    steps = STEPS if args.step == "all" else (args.step,)
    if steps[0] == "pipeline" and not (
            args.version and reg.exists(registry.run_path(
                reg.check_version_id(args.version)))):
        version = registry.new_version(args.version)
    elif args.version is None:
        raise RetrainError("--step=%s needs --version (the id the pipeline "
                           "step printed)" % args.step)
    else:
        version = reg.check_version_id(args.version)
        if len(steps) == 1 and steps[0] != "promote":
            registry.check_not_promoted(version, "--step=%s" % args.step)
        if read_run_or_none(registry, version) is None:
            if not _is_chief():  # the chief adopts the dataset
                check_dataset(registry, version)
            else:
                adopt_dataset(registry, version)
    result: dict[str, Any] = {}
    for step in steps:
        print("retrain %s: %s" % (version, step), file=sys.stderr)
        try:
            result = run_step(registry, version, step, args)
        except Refused as e:
            return version, {"promoted": False, "reason": str(e)}
        if result.get("promoted") is False:
            break
    return version, result


def read_run_or_none(registry: Registry, version: str) -> dict[str, Any] | None:
    return reg.read_json(registry.run_path(version))


def main(argv: list[str] | None = None) -> int:
    """The command: 0 promoted (or nothing to do), 3 refused by the gate, 1 a
    step failed, 2 a bad flag. The pipeline's console shows the steps' logs
    without the libraries' noise."""
    console.configure_logging()
    return command_line.run_command(lambda: _retrain_command(build_parser().parse_args(argv)),
                                    console.NATIVE_NOISE)


def _retrain_command(args: argparse.Namespace) -> int:
    try:
        version, result = retrain(args)
    except (RetrainError, RegistryError) as e:
        print("retrain failed: %s; current model unchanged" % e,
              file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # a crash inside the pipeline or the trainer
        print("retrain failed: %s: %s; current model unchanged"
              % (type(e).__name__, e), file=sys.stderr)
        return EXIT_FAILED
    if "promoted" in result:
        print("retrain %s: %s: %s" % (
            version, ("already promoted" if result.get("already") else
                      "promoted") if result["promoted"] else "refused",
            result["reason"]), file=sys.stderr)
    print(version)
    if result.get("promoted") is False:
        return EXIT_REFUSED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
