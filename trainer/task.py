"""``python -m trainer.task``: the command line of the trainer.

The tutorial's flags plus what GPU workers need (periodic eval, export,
mixed precision, distribution). ``main`` returns the final eval metrics and
can be called repeatedly in one process (scheduled retraining does).
"""
from __future__ import annotations

import argparse
import os
import sys

import command_line
from trainer.errors import TrainerError
from trainer.names import CELL_TYPES, DISTRIBUTIONS, MODEL_FAMILIES


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("[", "").replace("]", "").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected integers separated by commas: %r" % text)
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("expected positive integers: %r" % text)
    return values


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError("expected true or false: %r" % text)


# --augment_<name>: trainer.augment.AugmentConfig's fields, defaults and meaning.
AUGMENT_FLAGS = (
    ("scale", 0.2, "scale each axis by a factor in [1 - s, 1 + s]"),
    ("shear", 0.2, "shear by a factor in [-s, s]"),
    ("rotation", 15.0, "rotate by up to this many degrees either way"),
    ("jitter", 0.01, "move each point by noise of this deviation (the drawing's box is 1)"),
    ("drop_points", 0.1, "drop each point inside a stroke with this probability"),
    ("drop_strokes", 0.1, "drop each stroke with this probability (never the longest)"),
)


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the trainer, with the tutorial's defaults."""
    p = command_line.Parser("quickdraw-train", "trainer.task", description=__doc__.split("\n")[0])
    io = p.add_argument_group("data and outputs")
    io.add_argument("--training_data", required=True,
                    help="file pattern of the training TFRecords (any TF filesystem, e.g. gs://)")
    io.add_argument("--eval_data", required=True, help="file pattern of the eval TFRecords")
    io.add_argument("--classes_file", required=True, help="class names, one a line")
    io.add_argument("--model_dir", required=True,
                    help="checkpoints, TensorBoard logs, eval report; rerun to resume")
    io.add_argument("--export_dir", default=None,
                    help="where the SavedModel goes (default: <model_dir>/export)")
    io.add_argument("--length_stats", default=None,
                    help="ink_length_stats.json for bucketing (default: beside the training data)")
    io.add_argument("--no_dataset_checksums", action="store_true",
                    help="check only file sizes against the pipeline's manifest, not CRC-32C "
                         "(faster start on a large dataset)")
    io.add_argument("--warm_start_from", default=None,
                    help="initialise weights from another run's model_dir or export")
    model = p.add_argument_group("model")
    model.add_argument("--num_layers", type=int, default=3, help="stacked bidirectional LSTMs")
    model.add_argument("--num_nodes", type=int, default=128, help="units per LSTM direction")
    model.add_argument("--num_conv", type=int_list, default=[48, 64, 96],
                       help="filters of each conv1d layer")
    model.add_argument("--conv_len", type=int_list, default=[5, 5, 3],
                       help="kernel width of each conv1d layer")
    model.add_argument("--cell_type", choices=CELL_TYPES, default="lstm",
                       help="lstm: Keras LSTM (cuDNN kernel on a GPU by itself); "
                            "block_lstm: the tutorial's fused cell, run as lstm; "
                            "cudnn_lstm: insist on cuDNN")
    model.add_argument("--batch_norm", type=boolean, nargs="?", const=True, default=False,
                       help="batch normalisation before each conv layer")
    model.add_argument("--dropout", type=float, default=0.3,
                       help="dropout rate (training only) before every conv layer but the "
                            "first and between the bidirectional LSTM layers; for the cnn, "
                            "before and after its dense layer")
    model.add_argument("--model", choices=MODEL_FAMILIES, default="rnn",
                       help="rnn: the tutorial's conv1d + BiLSTM over the ink; cnn: a small "
                            "CNN over the drawing rendered as an image")
    model.add_argument("--raster_size", type=int, default=24,
                       help="cnn: side of the rendered image in pixels")
    model.add_argument("--cnn_filters", type=int_list, default=[16, 32, 64],
                       help="cnn: filters of each 3x3 conv stage (each halves the image)")
    model.add_argument("--cnn_dense", type=int, default=256, help="cnn: units of the dense layer")
    train = p.add_argument_group("training")
    train.add_argument("--steps", type=int, default=100000, help="total training steps")
    train.add_argument("--batch_size", type=int, default=8, help="global batch size")
    train.add_argument("--learning_rate", type=float, default=0.0001)
    train.add_argument("--gradient_clipping_norm", type=float, default=9.0)
    train.add_argument("--seed", type=int, default=None, help="seed for weights and shuffling")
    train.add_argument("--no_bucketing", action="store_true",
                       help="pad batches without grouping drawings by length")
    train.add_argument("--batch_tokens", type=int, default=None,
                       help="size each length bucket's batches by this many points (padding "
                            "included; global, split between replicas), at most --batch_size "
                            "drawings; bounds the memory of batches of long drawings")
    train.add_argument("--label_smoothing", type=float, default=0.0,
                       help="put this much of the target's weight evenly on all classes")
    train.add_argument("--augment", type=boolean, nargs="?", const=True, default=False,
                       help="change training drawings at random (the --augment_* flags)")
    for name, default, text in AUGMENT_FLAGS:
        train.add_argument("--augment_" + name, type=float, default=default, help=text)
    train.add_argument("--steps_per_execution", type=int, default=1,
                       help="training steps per compiled call; the host reads the loss and "
                            "the step once per call (for accelerators; no faster on a CPU)")
    train.add_argument("--mixed_precision", choices=("auto", "true", "false"), default="auto",
                       help="float16 compute with float32 weights (auto: on GPU)")
    train.add_argument("--distribution", choices=DISTRIBUTIONS, default="auto",
                       help="auto: multi_worker if TF_CONFIG lists several workers, "
                            "mirrored if several GPUs, else one_device")
    loop = p.add_argument_group("checkpoints, eval, logging")
    loop.add_argument("--checkpoint_every_steps", type=int, default=500)
    loop.add_argument("--keep_checkpoints", type=int, default=3)
    loop.add_argument("--eval_every_steps", type=int, default=1000,
                      help="evaluate during training every N steps (0: only at the end)")
    loop.add_argument("--eval_steps", type=int, default=None,
                      help="eval batches per evaluation (default: the whole eval set)")
    loop.add_argument("--log_every_steps", type=int, default=100)
    loop.add_argument("--top_k", type=int, default=3, help="classes the export returns")
    loop.add_argument("--calibrate", type=boolean, nargs="?", const=True, default=True,
                      help="fit a temperature on the eval split after training; the export "
                           "serves softmax(logits / temperature)")
    return p


def validate(args: argparse.Namespace) -> None:
    """Refuses a bad flag value in one line naming the flag, before anything loads.

    TensorFlow takes the numbers as float32 and int64: a float flag must be a
    finite float32 (NaN, inf and 1e39 would reach the weights), an integer
    must fit in 64 bits; then each flag must be in its own range.
    """
    float32_max = 3.4028234663852886e38
    for name, value in sorted(vars(args).items()):
        if type(value) is float and not abs(value) <= float32_max:  # NaN fails too
            raise TrainerError("--%s must be a finite number (float32), not %s" % (name, value))
        if any(type(v) is int and not -2 ** 63 <= v < 2 ** 63
               for v in (value if type(value) is list else [value])):
            raise TrainerError("--%s must fit in 64 bits (below 2**63)" % name)
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        raise TrainerError("--seed must be in [0, 2**32)")
    for name in ("model_dir", "export_dir"):
        path = getattr(args, name)
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise TrainerError("--%s=%s is a file, not a folder" % (name, path))
    for name in ("steps", "batch_size", "num_layers", "num_nodes", "checkpoint_every_steps",
                 "log_every_steps", "top_k", "keep_checkpoints", "steps_per_execution",
                 "cnn_dense"):
        if getattr(args, name) <= 0:
            raise TrainerError("--%s must be positive" % name)
    if args.batch_tokens is not None:
        if args.batch_tokens <= 0:
            raise TrainerError("--batch_tokens must be positive")
        if args.no_bucketing:
            raise TrainerError("--batch_tokens sizes the length buckets' batches; it cannot be "
                               "used with --no_bucketing")
    if not 0.0 <= args.dropout < 1.0:
        raise TrainerError("--dropout must be in [0, 1)")
    for name in ("label_smoothing", "augment_drop_points", "augment_drop_strokes",
                 "augment_scale"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise TrainerError("--%s must be in [0, 1)" % name)
    for name, most, why in (("augment_shear", 10.0, "10 slants by up to 84 degrees"),
                            ("augment_rotation", 180.0, "degrees either way"),
                            ("augment_jitter", 1.0, "the drawing's box is 1")):
        if not 0 <= getattr(args, name) <= most:
            raise TrainerError("--%s must be in [0, %g] (%s), 0 for none" % (name, most, why))
    if args.raster_size < 2 ** len(args.cnn_filters):
        raise TrainerError("--raster_size must be at least 2 ** (number of --cnn_filters) = %d"
                           % 2 ** len(args.cnn_filters))
    if args.learning_rate <= 0:
        raise TrainerError("--learning_rate must be positive")
    if args.gradient_clipping_norm < 0:
        raise TrainerError("--gradient_clipping_norm must be positive, or 0 for no clipping")
    if args.eval_every_steps < 0:
        raise TrainerError("--eval_every_steps must be positive, or 0 to evaluate at the end only")
    if args.eval_steps is not None and args.eval_steps <= 0:
        raise TrainerError("--eval_steps must be positive")


def main(argv: list[str] | None = None, take_over_lock: bool = False) -> dict:
    """Trains and evaluates; returns the final eval metrics.

    Raises ``TrainerError`` for bad input; run as a command, that becomes one
    line on stderr and exit code 2. ``take_over_lock``: the model folder's
    lock, if any, was left by an earlier attempt of the caller's own task.
    """
    args = build_parser().parse_args(argv)
    validate(args)
    from trainer.train import train_and_evaluate  # TensorFlow loads here, once the flags are good
    return train_and_evaluate(args, take_over_lock)


def run() -> None:
    """Console-script entry point: TensorFlow's native INFO lines left out of
    stderr, a user error as one line and exit status 2."""
    sys.exit(command_line.run_command(_train))


def _train() -> int:
    main()
    return 0


if __name__ == "__main__":
    run()
