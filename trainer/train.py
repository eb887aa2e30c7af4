"""The training loop: distributed steps, checkpoints, periodic eval, export.

A custom loop rather than ``fit`` so that a preempted worker restarted with
the same command resumes exactly: the step count is the optimizer's
iteration counter (the number of updates applied), saved in every checkpoint
with the weights and the Adam moments, and the loop simply runs until that
counter reaches ``--steps``. Steps run ``--steps_per_execution`` at a time
in one compiled call (Keras' idea), so the host does not wait for every step;
a call ends at the next log, checkpoint or eval step, and stops early at a
non-finite loss or gradient norm, which the host then reports before any
checkpoint or export holds it. The compiled steps are ``trainer.train_step``;
where the weights start (a resume, a warm start), ``trainer.checkpoints``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

import folder_lock
from trainer import data, summaries
from trainer.augment import AugmentConfig
from trainer.checkpoints import (CONFIG_FILE, make_checkpoint, read_saved_config,
                                 restore_or_warm_start, same_architecture)
from trainer.distribution import make_strategy, task_identity
from trainer.errors import TrainerError
from trainer.evaluate import run_eval, write_json, write_report
from trainer.export import dataset_transform_output, export_model
from trainer.model import CELL_TYPES, ModelConfig, build_model
from trainer.train_step import make_optimizer, make_train_loop

# Loss scaling halves the scale at each overflow; this many skipped steps in a
# row means the gradients are not finite at any scale.
MAX_SKIPPED_STEPS = 64
LOCK_FILE = "trainer.lock"  # in the model folder while a run trains into it


def model_config(args: argparse.Namespace, num_classes: int) -> ModelConfig:
    gpus = tf.config.list_physical_devices("GPU")
    if args.cell_type not in CELL_TYPES:
        raise TrainerError("unknown --cell_type %r (choose from %s)"
                           % (args.cell_type, ", ".join(CELL_TYPES)))
    if args.cell_type == "cudnn_lstm" and not gpus:
        raise TrainerError("--cell_type=cudnn_lstm needs a GPU; use --cell_type=lstm "
                           "(which runs on cuDNN by itself when a GPU is present)")
    if len(args.num_conv) != len(args.conv_len):
        raise TrainerError("--num_conv and --conv_len must list as many layers")
    mixed = {"auto": bool(gpus), "true": True, "false": False}[args.mixed_precision]
    return ModelConfig(num_classes=num_classes, num_layers=args.num_layers,
                       num_nodes=args.num_nodes, num_conv=tuple(args.num_conv),
                       conv_len=tuple(args.conv_len), cell_type=args.cell_type,
                       batch_norm=args.batch_norm, dropout=args.dropout,
                       mixed_precision=mixed, model=args.model, raster_size=args.raster_size,
                       cnn_filters=tuple(args.cnn_filters), cnn_dense=args.cnn_dense)


def augment_config(args: argparse.Namespace) -> AugmentConfig | None:
    """The training drawings' augmentation, or None with ``--augment=false``."""
    if not args.augment:
        return None
    return AugmentConfig(**{field.name: getattr(args, "augment_" + field.name)
                            for field in dataclasses.fields(AugmentConfig)})


@dataclasses.dataclass
class Inputs:
    """The checked data of a run: classes, shard files, length buckets."""
    classes: list[str]
    train_files: list[str]
    eval_files: list[str]
    boundaries: list[int]
    eval_dropped: int


def check_inputs(args: argparse.Namespace, is_chief: bool) -> Inputs:
    """Every input read and checked before the model is built: the classes,
    the shards (and the pipeline's manifest), their records' labels."""
    classes = data.read_classes(args.classes_file)
    train_files = data.list_files(args.training_data)
    eval_files = data.list_files(args.eval_data)
    data.verify_datasets([args.training_data, args.eval_data], args.classes_file,
                         checksums=not args.no_dataset_checksums)
    data.check_records(train_files, classes)
    data.check_records(eval_files, classes)
    eval_dropped = data.scan(eval_files, classes, "eval")[1] if is_chief else 0
    boundaries = ([] if args.no_bucketing
                  else data.length_boundaries(args.training_data, args.length_stats))
    return Inputs(classes, train_files, eval_files, boundaries, eval_dropped)


class Evaluator:
    """Evaluates the training model's current weights on the whole eval set
    (or ``--eval_steps`` batches), in float32, and logs the metrics."""

    def __init__(self, args: argparse.Namespace, config: ModelConfig, inputs: Inputs,
                 model, is_chief: bool):
        self.args, self.inputs, self.model = args, inputs, model
        self.raster_size = config.raster_size if config.model == "cnn" else None
        self.eval_model = build_model(dict_replace(config, mixed_precision=False))
        self.logits = tf.function(lambda f: self.eval_model(f, training=False),
                                  reduce_retracing=True)
        self.summaries = tf.summary.create_file_writer(os.path.join(args.model_dir, "eval")) \
            if is_chief else tf.summary.create_noop_writer()

    def __call__(self, step: int) -> tuple[dict, np.ndarray]:
        args = self.args
        self.eval_model.set_weights(self.model.get_weights())
        dataset = data.make_dataset(self.inputs.eval_files, args.batch_size, self.inputs.classes,
                                    training=False, boundaries=self.inputs.boundaries,
                                    batch_tokens=args.batch_tokens, raster_size=self.raster_size)
        metrics, matrix = run_eval(self.logits, dataset, self.inputs.classes, args.eval_steps,
                                   temperature=None if args.calibrate else 1.0)
        metrics["global_step"] = step
        if not np.isfinite(metrics["loss"]):
            raise TrainerError(
                "eval loss is %s at step %d: the model is not exported. Look at the eval data "
                "first (%s), then lower --learning_rate (now %g)"
                % (metrics["loss"], step, args.eval_data, args.learning_rate))
        with self.summaries.as_default():
            for key in ("loss", "accuracy", "top3_accuracy", "map3", "ece"):
                summaries.scalar(key, metrics[key], step)
        print("eval  step %d: loss %.4f  accuracy %.4f  top3 %.4f  map@3 %.4f  ECE %.4f "
              "(temperature %.2f)  (%d examples)"
              % (step, metrics["loss"], metrics["accuracy"], metrics["top3_accuracy"],
                 metrics["map3"], metrics["ece"], metrics["temperature"],
                 metrics["num_examples"]), flush=True)
        return metrics, matrix


def train_and_evaluate(args: argparse.Namespace, take_over_lock: bool = False) -> dict:
    """Trains to ``args.steps``, evaluates, writes the report and export;
    returns metrics. The chief holds the model folder's lock throughout
    (``take_over_lock``: see ``folder_lock.FolderLock.acquire``)."""
    distribution, strategy = make_strategy(args.distribution)
    is_chief, worker_index = task_identity(strategy)
    print("Training with distribution %s: %d replica(s) in sync%s"
          % (distribution, strategy.num_replicas_in_sync,
             "" if is_chief else ", worker %d" % worker_index), flush=True)
    with model_dir_lock(args.model_dir, is_chief, take_over_lock):
        return _train_and_evaluate(args, strategy, is_chief, worker_index)


@contextlib.contextmanager
def model_dir_lock(model_dir: str, is_chief: bool, take_over: bool) -> Iterator[None]:
    """``trainer.lock`` in the model folder, held by the chief: two runs into
    one folder would mix their checkpoints, report and export."""
    if not is_chief:
        yield
        return
    created = not tf.io.gfile.exists(model_dir)
    tf.io.gfile.makedirs(model_dir)
    lock = folder_lock.FolderLock(model_dir, LOCK_FILE, "training into")
    try:
        lock.acquire(take_over)
    except folder_lock.LockError as e:
        raise TrainerError(str(e)) from None
    try:
        yield
    finally:
        lock.release()
        if created and "://" not in model_dir and not os.listdir(model_dir):
            os.rmdir(model_dir)  # a run refused before its first write leaves nothing


def _train_and_evaluate(args: argparse.Namespace, strategy, is_chief: bool, worker_index: int) -> dict:
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    inputs = check_inputs(args, is_chief)
    config = model_config(args, len(inputs.classes))

    saved = read_saved_config(args.model_dir) if is_chief else None
    if saved is not None and not same_architecture(saved, config):
        raise TrainerError("%s holds a run of another model (%s); use a new --model_dir"
                           % (args.model_dir, saved.to_dict()))
    with strategy.scope():
        model = build_model(config)
        optimizer = make_optimizer(args.learning_rate, config.mixed_precision)
        optimizer.build(model.trainable_variables)  # so that a checkpoint restores at once
        checkpoint = make_checkpoint(model, optimizer)
    scratch_dir = os.path.join(args.model_dir, "worker_tmp", str(worker_index))
    manager = tf.train.CheckpointManager(checkpoint, args.model_dir if is_chief else scratch_dir,
                                         max_to_keep=args.keep_checkpoints)
    restore_or_warm_start(model, optimizer, args, config)
    if is_chief:
        tf.io.gfile.makedirs(args.model_dir)
        write_json(os.path.join(args.model_dir, CONFIG_FILE), config.to_dict())

    with tf.device("/cpu:0"):
        train_dropped = tf.Variable(0, dtype=tf.int64, trainable=False)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        replicas = context.num_replicas_in_sync
        batch = context.get_per_replica_batch_size(args.batch_size)
        return data.make_dataset(inputs.train_files, batch,
                                 inputs.classes, training=True, boundaries=inputs.boundaries,
                                 seed=args.seed, input_context=context, dropped=train_dropped,
                                 batch_tokens=args.batch_tokens // replicas
                                 if args.batch_tokens else None,
                                 augment=augment_config(args),
                                 raster_size=config.raster_size if config.model == "cnn" else None)

    train_steps = make_train_loop(strategy, model, optimizer, args.gradient_clipping_norm,
                                  args.label_smoothing)
    evaluate = Evaluator(args, config, inputs, model, is_chief)
    step = run_steps(args, config, iter(strategy.distribute_datasets_from_function(dataset_fn)),
                     train_steps, model, optimizer, manager, evaluate if is_chief else None,
                     is_chief)
    if not is_chief:
        if tf.io.gfile.exists(scratch_dir):
            tf.io.gfile.rmtree(scratch_dir)
        return {"global_step": step}
    metrics, matrix = evaluate(step)
    evaluate.summaries.close()
    metrics["dropped_examples"] = {"eval": inputs.eval_dropped, "training": int(train_dropped.numpy())}
    if inputs.eval_dropped or metrics["dropped_examples"]["training"]:
        print("Left out zero-length drawings: %d of the eval set, %d read while training"
              % (inputs.eval_dropped, metrics["dropped_examples"]["training"]), flush=True)
    check_finite_weights(model, step, manager, args)
    write_report(metrics, matrix, inputs.classes, args.model_dir)
    export_dir = args.export_dir or os.path.join(args.model_dir, "export")
    export_model(evaluate.eval_model, inputs.classes, export_dir, step, args.top_k,
                 dataset_transform_output(args.classes_file), metrics["temperature"])
    print("Exported the model to %s; eval report in %s" % (export_dir, args.model_dir),
          flush=True)
    return metrics


def run_steps(args: argparse.Namespace, config: ModelConfig, iterator, train_steps, model,
              optimizer, manager, evaluate: Evaluator | None, is_chief: bool) -> int:
    """Runs compiled calls of steps until the optimizer's counter reaches
    ``--steps``: logs, checkpoints and evaluates on their periods, and stops
    at a non-finite loss or gradient norm. Returns the step reached."""
    train_summaries = tf.summary.create_file_writer(os.path.join(args.model_dir, "train")) \
        if is_chief else tf.summary.create_noop_writer()
    step = int(optimizer.iterations.numpy())
    window_start, window_examples, skipped, window_skipped = time.time(), 0, 0, 0
    periods = [p for p in (args.log_every_steps, args.checkpoint_every_steps,
                           args.eval_every_steps) if p]
    try:
        while step < args.steps:
            count = min([args.steps_per_execution, args.steps - step]
                        + [p - step % p for p in periods])
            result = train_steps(iterator, tf.constant(count, tf.int32))
            loss, norm, examples = (float(v) for v in result[:3])
            skipped_all, skipped_last = (int(v) for v in result[3:])
            done = int(optimizer.iterations.numpy())
            if not (np.isfinite(loss) and (np.isfinite(norm) or config.mixed_precision)):
                raise TrainerError(non_finite_message(
                    "loss" if not np.isfinite(loss) else "gradient norm",
                    loss if not np.isfinite(loss) else norm, done + 1, manager, args))
            # Loss scaling skips a step whose float16 gradients overflowed.
            skipped = skipped_last if done > step else skipped + skipped_last
            window_skipped += skipped_all
            if skipped > MAX_SKIPPED_STEPS:
                raise TrainerError(non_finite_message("gradient norm", norm, done + 1,
                                                      manager, args))
            if done == step:
                continue
            step = done
            window_examples += examples
            if step % args.log_every_steps == 0 or step == args.steps:
                rate = window_examples / max(time.time() - window_start, 1e-9)
                print("train step %d/%d: loss %.4f  %.0f examples/s%s"
                      % (step, args.steps, loss, rate,
                         "  (%d batches skipped by loss scaling)" % window_skipped
                         if window_skipped else ""), flush=True)
                with train_summaries.as_default():
                    summaries.scalar("loss", loss, step)
                    summaries.scalar("examples_per_second", rate, step)
                window_start, window_examples, window_skipped = time.time(), 0, 0
            if step % args.checkpoint_every_steps == 0 or step == args.steps:
                check_finite_weights(model, step, manager, args)
                manager.save(checkpoint_number=step)
            if evaluate is not None and args.eval_every_steps and \
                    step % args.eval_every_steps == 0 and step < args.steps:
                evaluate(step)
                window_start = time.time()
    except data.DATA_ERRORS as e:
        raise TrainerError("bad training data: %s" % data.data_error(e.message)) from e
    finally:
        train_summaries.close()
    return step


def non_finite_message(what: str, value: float, step: int, manager, args) -> str:
    """Where to look when training diverges: the data first, then the learning rate."""
    kept = manager.latest_checkpoint
    return ("%s is %s at step %d; no checkpoint or export holds it (%s). Look at the training "
            "data first (%s: a record with extreme values), then lower --learning_rate "
            "(now %g)" % (what, value, step,
                          "last checkpoint %s" % kept if kept else "no checkpoint yet",
                          args.training_data, args.learning_rate))


def check_finite_weights(model, step: int, manager, args) -> None:
    """The last guard before a checkpoint or an export is written."""
    for weight in model.weights:
        if not bool(tf.reduce_all(tf.math.is_finite(weight.value))):
            raise TrainerError(non_finite_message("weight %s" % weight.path, "not finite",
                                                  step, manager, args))


def dict_replace(config: ModelConfig, **changes) -> ModelConfig:
    return ModelConfig.from_dict(dict(config.to_dict(), **changes))
