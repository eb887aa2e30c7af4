"""Scheduled retraining: new dataset, new model, and a gate before it serves.

One run makes one dated version in the registry (see ``deploy.registry``):

1. ``pipeline``: runs the Beam pipeline on the current data into
   ``datasets/<version>``.
2. ``train``: trains on it, warm-starting from the current model when the
   classes are the same, and exports a SavedModel.
3. ``evaluate``: evaluates the candidate and the current model on the same
   fixed eval set and writes ``models/<version>/eval_report.json``.
4. ``promote``: moves ``current`` to the candidate only if its accuracy is at
   least the current model's minus ``--promotion_margin``.

``--step=all`` runs them in order in one process; each step can also run on
its own (``--step=train --version=...``) so a scheduler can put the pipeline
on Dataflow and training on Vertex AI. Every step records what it did, or why
it failed, in ``models/<version>/run.json``. ``current`` is only ever written
by a successful promotion, so a failed or killed run leaves it untouched.

Exit status: 0 done (or promoted), 1 a step failed, 3 the candidate was
refused by the gate.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from typing import Any, Callable

import tfrecord_schema as schema
from deploy import registry as reg
from deploy.registry import Registry, RegistryError

STEPS = ("pipeline", "train", "evaluate", "promote")
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 3
DEFAULT_MARGIN = 0.02

# Flags the retrain driver sets itself; passing them through would point the
# pipeline or trainer outside the registry.
PIPELINE_OWNED_FLAGS = ("--output", "--output_path")
TRAINER_OWNED_FLAGS = ("--training_data", "--eval_data", "--classes_file",
                       "--model_dir", "--export_dir", "--warm_start_from")


class RetrainError(Exception):
    """A step cannot run or did not produce what the next step needs."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quickdraw-retrain",
        description="Retrain the sketch classifier into a versioned registry "
                    "and promote it only if it is not worse than the current "
                    "model.")
    parser.add_argument("--registry", required=True,
                        help="Registry root: a local directory or gs:// prefix.")
    parser.add_argument("--step", choices=STEPS + ("all",), default="all",
                        help="Run one step, or all of them in order.")
    parser.add_argument("--version", default=None,
                        help="Version id. New runs get a dated one "
                             "(YYYYmmdd-HHMMSS, UTC); single steps after "
                             "'pipeline' need the id it printed.")
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
                        help="Promote when candidate accuracy >= current "
                             "accuracy - margin on the fixed eval set.")
    parser.add_argument("--fixed_eval_data", default=None,
                        help="TFRecord pattern of the eval set to judge on. "
                             "Default: the one recorded in the registry, "
                             "else the candidate dataset's eval split (which "
                             "is recorded at the first promotion).")
    parser.add_argument("--fixed_eval_classes", default=None,
                        help="Classes file of --fixed_eval_data (default: "
                             "%s beside it)." % schema.CLASSES_FILE)
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
    return [line.strip() for line in reg.read_text(path).splitlines()
            if line.strip()]


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


def check_dataset(registry: Registry, version: str) -> dict[str, Any]:
    """Fails unless the dataset of ``version`` is complete (a pipeline run
    that was killed leaves no stats file or no shards)."""
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
    launched elsewhere (the Dataflow Flex Template in the Airflow DAG)."""
    if not reg.exists(registry.dataset_dir(version)):
        raise RetrainError(
            "no version %s in %s: neither a run record nor a dataset"
            % (version, registry.root))
    files = check_dataset(registry, version)
    registry.new_version(version, dataset_exists_ok=True)
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

    files = check_dataset(registry, version)
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


def fixed_eval_set(registry: Registry, version: str,
                   args: argparse.Namespace) -> dict[str, str]:
    if args.fixed_eval_data:
        classes = args.fixed_eval_classes or reg.join(
            os.path.dirname(args.fixed_eval_data.rstrip("/")),
            schema.CLASSES_FILE)
        return {"eval_data": args.fixed_eval_data, "classes_file": classes,
                "source": "--fixed_eval_data"}
    recorded = registry.fixed_eval()
    if recorded:
        return {k: recorded[k] for k in ("eval_data", "classes_file", "source")}
    files = _dataset_files(registry, version)
    return {"eval_data": files["eval_data"],
            "classes_file": files["classes_file"],
            "source": "dataset %s" % version}


def run_evaluate(registry: Registry, version: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    from trainer.evaluate import evaluate_saved_model

    if registry.step_status(version, "train") != "done":
        raise RetrainError("version %s has not finished training" % version)
    eval_set = fixed_eval_set(registry, version, args)
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
        return _plain(evaluate_saved_model(
            registry.export_dir(v), eval_set["eval_data"],
            eval_set["classes_file"], batch_size=args.eval_batch_size))

    report: dict[str, Any] = {
        "version": version, "eval_set": eval_set,
        "evaluated_at": reg.utc_now(),
        "candidate": evaluate(version),
        "current_version": registry.current_version(),
        "current": None,
    }
    if report["current_version"]:
        report["current"] = evaluate(report["current_version"])
    registry.write_eval_report(version, report)
    return {"eval_report": registry.eval_report_path(version),
            "candidate_accuracy": report["candidate"]["accuracy"],
            "current_accuracy": (report["current"] or {}).get("accuracy")}


def decide(report: dict[str, Any], margin: float) -> tuple[bool, str]:
    """The promotion gate: not worse than the current model by over margin."""
    candidate = float(report["candidate"]["accuracy"])
    if report.get("current") is None:
        return True, "no current model; candidate accuracy %.4f" % candidate
    current = float(report["current"]["accuracy"])
    verdict = candidate >= current - margin
    return verdict, "candidate accuracy %.4f %s current %s accuracy %.4f - " \
        "margin %.4f" % (candidate, ">=" if verdict else "<",
                         report["current_version"], current, margin)


def run_promote(registry: Registry, version: str,
                args: argparse.Namespace) -> dict[str, Any]:
    if registry.step_status(version, "evaluate") != "done":
        raise RetrainError("version %s has not been evaluated" % version)
    report = registry.read_eval_report(version)
    if report is None:
        raise RetrainError("version %s has no eval report" % version)
    now_current = registry.current_version()
    if now_current == version:
        raise RetrainError("version %s is already the current model" % version)
    if now_current != report["current_version"]:
        raise RetrainError(
            "current moved from %s to %s since the evaluation; run the "
            "evaluate step again" % (report["current_version"], now_current))
    promoted, reason = decide(report, args.promotion_margin)
    report["decision"] = {"promoted": promoted, "reason": reason,
                          "margin": args.promotion_margin,
                          "decided_at": reg.utc_now()}
    registry.write_eval_report(version, report)
    if promoted:
        if registry.fixed_eval() is None:
            eval_set = report["eval_set"]
            registry.set_fixed_eval(eval_set["eval_data"],
                                    eval_set["classes_file"],
                                    eval_set["source"])
        registry.set_current(version,
                             accuracy=report["candidate"]["accuracy"],
                             eval_data=report["eval_set"]["eval_data"],
                             previous=now_current)
    return {"promoted": promoted, "reason": reason}


STEP_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "pipeline": run_pipeline, "train": run_train,
    "evaluate": run_evaluate, "promote": run_promote,
}


def run_step(registry: Registry, version: str, step: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """Runs one step and records its outcome; re-raises failures."""
    record = step != "train" or _is_chief()
    if record:
        registry.record_step(version, step, fresh=True, status="running",
                             started_at=reg.utc_now(), pid=os.getpid())
    try:
        result = STEP_FUNCTIONS[step](registry, version, args)
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
    if steps[0] == "pipeline":
        version = registry.new_version(args.version)
    elif args.version is None:
        raise RetrainError("--step=%s needs --version (the id the pipeline "
                           "step printed)" % args.step)
    else:
        version = reg.check_version_id(args.version)
        if not reg.exists(registry.run_path(version)):
            if not _is_chief():  # the chief adopts the dataset
                check_dataset(registry, version)
            else:
                adopt_dataset(registry, version)
    result: dict[str, Any] = {}
    for step in steps:
        print("retrain %s: %s" % (version, step), file=sys.stderr)
        result = run_step(registry, version, step, args)
    return version, result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            version, "promoted" if result["promoted"] else "refused",
            result["reason"]), file=sys.stderr)
    print(version)
    if result.get("promoted") is False:
        return EXIT_REFUSED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
