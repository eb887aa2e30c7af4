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
import sys

import command_line
import tfrecord_schema as schema
from deploy.errors import RetrainError
from deploy.gate import DEFAULT_MARGIN, DEFAULT_MIN_ACCURACY
from deploy.registry import RegistryError
from deploy.steps import STEPS, retrain
from pipeline import console

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 3


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
