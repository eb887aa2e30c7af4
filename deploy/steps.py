"""The retraining steps and their state machine: each step records in the
version's ``run.json`` that it runs, then what it did or why it failed; a step
done is not run again, and only a promotion writes ``current``."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any, Callable

from deploy import eval_set as evaluation
from deploy import registry as reg
from deploy import registry_files, registry_records
from deploy.errors import Refused, RetrainError
from deploy.eval_set import fixed_eval_set, plain_metrics
from deploy.gate import best_promoted, decide, pointer_key
from deploy.registry import Registry
from deploy.version_dataset import adopt_dataset, check_dataset, read_classes

STEPS = ("pipeline", "train", "evaluate", "promote")
PROMOTION_ATTEMPTS = 10  # evaluations against a current model that moved

# Flags the retrain driver sets itself; passing them through would point the
# pipeline or trainer outside the registry.
PIPELINE_OWNED_FLAGS = ("--output", "--output_path")
TRAINER_OWNED_FLAGS = ("--training_data", "--eval_data", "--classes_file",
                       "--model_dir", "--export_dir", "--warm_start_from")


def split_flags(text: str, owned: tuple[str, ...], what: str) -> list[str]:
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


def run_pipeline(registry: Registry, version: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.run import run as run_beam_pipeline

    flags = split_flags(args.pipeline_flags, PIPELINE_OWNED_FLAGS, "pipeline")
    output = registry.dataset_dir(version)
    # This process holds the version's pipeline step (``_start_step``): a lock
    # in its folder is an earlier attempt's, dead even if on another machine.
    stats = run_beam_pipeline(flags + ["--output=%s" % output], take_over_lock=True)
    check_dataset(registry, version)
    return {"dataset": output, "flags": flags, "stats": stats}


def is_chief() -> bool:
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
    flags = split_flags(args.trainer_flags, TRAINER_OWNED_FLAGS, "trainer")
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
    if is_chief():
        registry.record_step(version, "train", warm_start_from=warm_from,
                             warm_start_reason=warm_reason)
    # As for the pipeline's lock: this process holds the version's train step.
    metrics = train_main(argv, take_over_lock=True)
    if is_chief() and not registry_files.exists(registry.export_dir(version)):
        raise RetrainError("training finished but wrote no export at %s"
                           % registry.export_dir(version))
    return {"flags": flags, "classes": classes, "warm_start_from": warm_from,
            "warm_start_reason": warm_reason, "metrics": plain_metrics(metrics)}


def run_evaluate(registry: Registry, version: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    if registry.step_status(version, "train") != "done":
        raise RetrainError("version %s has not finished training" % version)
    try:
        eval_set = fixed_eval_set(registry, version, args)
    except Refused as e:
        registry.write_eval_report(version, {
            "version": version, "evaluated_at": registry_records.utc_now(),
            "gate": {"promoted": False, "reason": str(e), "checks": []}})
        raise
    if not registry_files.glob(eval_set["eval_data"]):
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
        return evaluation.evaluate_export(registry.export_dir(v), eval_set["eval_data"],
                                          eval_set["classes_file"], args.eval_batch_size)

    pointer = registry.current()
    report: dict[str, Any] = {
        "version": version, "eval_set": eval_set,
        "evaluated_at": registry_records.utc_now(),
        "candidate": evaluate(version),
        "current_version": pointer["version"] if pointer else None,
        "current_key": pointer_key(pointer),
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


def _finish_promotion(registry: Registry, version: str,
                      reason: str | None) -> dict[str, Any]:
    """Writes the decision into the eval report once ``current`` has moved
    (so a report never says "promoted" for a pointer that did not move)."""
    report = registry.read_eval_report(version) or {"version": version}
    decision = report.get("decision") or {}
    already = reason is None
    if not decision.get("promoted"):
        decision = {"promoted": True, "decided_at": registry_records.utc_now(),
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
        if report.get("current_key") != pointer_key(pointer):
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
                "decided_at": registry_records.utc_now()}
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
    machine, or in another boot or PID namespace of a host of the same name
    (a container beside this one), it cannot be told, and counts as dead: a
    scheduler runs one task per version at a time, and its retry may run anywhere."""
    from folder_lock import owner_is_gone, same_place
    who = entry.get("owner") or {}
    if entry.get("status") != "running" or not same_place(who) or who.get("pid") == os.getpid():
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
        run["steps"][step] = {"status": "running", "started_at": registry_records.utc_now(),
                              "updated_at": registry_records.utc_now(), "pid": os.getpid(),
                              "owner": registry_records.owner()}
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
    record = step != "train" or is_chief()
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
            args.version and registry_files.exists(registry.run_path(
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
            if not is_chief():  # the chief adopts the dataset
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
    return registry_records.read_json(registry.run_path(version))
