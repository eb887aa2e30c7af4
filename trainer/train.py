"""The training loop: distributed steps, checkpoints, periodic eval, export.

A custom loop rather than ``fit`` so that a preempted worker restarted with
the same command resumes exactly: the step count is the optimizer's
iteration counter (the number of updates applied), saved in every checkpoint
with the weights and the Adam moments, and the loop simply runs until that
counter reaches ``--steps``. Steps run ``--steps_per_execution`` at a time
in one compiled call (Keras' idea), so the host does not wait for every step;
a call ends at the next log, checkpoint or eval step, and stops early at a
non-finite loss or gradient norm, which the host then reports before any
checkpoint or export holds it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from trainer import data, summaries
from trainer.augment import AugmentConfig
from trainer.distribution import make_strategy, task_identity
from trainer.errors import TrainerError
from trainer.evaluate import run_eval, write_json, write_report
from trainer.export import dataset_transform_output, export_config, export_model, load_export
from trainer.model import CELL_TYPES, ModelConfig, build_model

CONFIG_FILE = "model_config.json"
# Loss scaling halves the scale at each overflow; this many skipped steps in a
# row means the gradients are not finite at any scale.
MAX_SKIPPED_STEPS = 64


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


def same_architecture(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether weights of one fit the other (cell type and precision do not matter)."""
    keys = ("num_classes", "num_layers", "num_nodes", "num_conv", "conv_len", "batch_norm",
            "model", "raster_size", "cnn_filters", "cnn_dense")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def read_saved_config(model_dir: str) -> ModelConfig | None:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return ModelConfig.from_dict(json.load(f))


def warm_start(model, config: ModelConfig, source: str) -> None:
    """Initialises ``model`` from another run's checkpoint or export."""
    if tf.saved_model.contains_saved_model(source):
        other = export_config(source)
        check_warm_start(config, other, source)
        loaded, _ = load_export(source)
        model.set_weights([v.numpy() for v in loaded.model_weights])
        return
    checkpoint = tf.train.latest_checkpoint(source)
    other = read_saved_config(source)
    if checkpoint is None or other is None:
        raise TrainerError("--warm_start_from=%s holds neither a checkpoint with its %s nor "
                           "a SavedModel" % (source, CONFIG_FILE))
    check_warm_start(config, other, source)
    tf.train.Checkpoint(model=model).read(checkpoint).expect_partial()


def check_warm_start(config: ModelConfig, other: ModelConfig, source: str) -> None:
    if other.num_classes != config.num_classes:
        raise TrainerError("cannot warm-start from %s: it has %d classes, this run has %d"
                           % (source, other.num_classes, config.num_classes))
    if not same_architecture(config, other):
        raise TrainerError("cannot warm-start from %s: its architecture differs (%s)"
                           % (source, other.to_dict()))


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


def train_and_evaluate(args: argparse.Namespace) -> dict:
    """Trains to ``args.steps``, evaluates, writes the report and export; returns metrics."""
    distribution, strategy = make_strategy(args.distribution)
    is_chief, worker_index = task_identity(strategy)
    print("Training with distribution %s: %d replica(s) in sync%s"
          % (distribution, strategy.num_replicas_in_sync,
             "" if is_chief else ", worker %d" % worker_index), flush=True)
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


class SummedGradientAdam(keras.optimizers.Adam):
    """Adam applied to gradients that the train step has already summed across replicas.

    Keras sums the replicas' gradients after its own clipping, so its
    ``global_clipnorm`` clips each replica's part and the threshold grows with
    the number of replicas. The train step sums first and clips the sum; this
    class only leaves out Keras' second summation.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def make_optimizer(learning_rate: float, mixed_precision: bool) -> keras.optimizers.Optimizer:
    """Adam; with dynamic loss scaling on top under mixed precision."""
    optimizer = SummedGradientAdam(learning_rate)
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The Adam that holds the moments and the step counter, with or without loss scaling."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def make_checkpoint(model, optimizer) -> tf.train.Checkpoint:
    """Weights, Adam and step under the same names whatever the precision.

    The loss scale, which only mixed precision has, is saved beside them, so
    a run may resume with the other ``--mixed_precision`` setting: float32
    resumes ignore the saved loss scale, mixed-precision resumes of a float32
    checkpoint start from the initial loss scale.
    """
    parts = {"model": model, "optimizer": inner_optimizer(optimizer)}
    if optimizer is not inner_optimizer(optimizer):
        parts["loss_scale"] = optimizer
    return tf.train.Checkpoint(**parts)


def restore_or_warm_start(model, optimizer, args: argparse.Namespace,
                          config: ModelConfig) -> None:
    """Resumes from ``model_dir``'s last checkpoint, else warm-starts if asked."""
    latest = tf.train.latest_checkpoint(args.model_dir)
    if latest:
        adam = inner_optimizer(optimizer)
        saved = {name for name, _ in tf.train.list_variables(latest)}
        if any(name.startswith("optimizer/inner_optimizer/") for name in saved):
            raise TrainerError("%s was written by an earlier trainer version with mixed precision, "
                               "whose checkpoints this one cannot resume; use a new --model_dir "
                               "with --warm_start_from=%s" % (latest, args.model_dir))
        tf.train.Checkpoint(model=model, optimizer=adam).restore(
            latest).assert_existing_objects_matched()
        if optimizer is not adam and any(name.startswith("loss_scale/") for name in saved):
            tf.train.Checkpoint(loss_scale=optimizer).restore(latest).expect_partial()
        print("Resuming from %s at step %d" % (latest, int(adam.iterations.numpy())), flush=True)
    elif args.warm_start_from:
        warm_start(model, config, args.warm_start_from)
        print("Warm-started from %s" % args.warm_start_from, flush=True)


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


def _replica_step(model, optimizer, clip_norm: float | None, label_smoothing: float = 0.0):
    """One replica's part of a step: forward, loss averaged over the global batch, update.

    The loss is the mean over all the replicas' examples (their number is
    summed across replicas, so batches sized by a budget of points, which
    differ from step to step and from replica to replica, weigh each example
    equally). With ``label_smoothing`` e the target puts 1 - e on the label
    and e spread evenly over all classes, which keeps the logits from
    growing without bound on few training drawings. The replicas' gradients
    are summed first and the sum is clipped to ``clip_norm`` by its global
    norm, so N replicas step exactly as one device does on the same global
    batch. Returns the loss, the global norm of the summed (unscaled)
    gradient and the number of examples.
    """
    scaling = optimizer is not inner_optimizer(optimizer)

    def step_fn(features, labels):
        context = tf.distribute.get_replica_context()
        examples = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      tf.cast(tf.shape(labels)[0], tf.float32))
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            if label_smoothing:
                log_p = tf.nn.log_softmax(logits)
                per_example = -((1.0 - label_smoothing) * tf.gather(
                    log_p, labels, axis=1, batch_dims=1)
                    + label_smoothing * tf.reduce_mean(log_p, axis=1))
            else:
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            loss = tf.reduce_sum(per_example) / examples
            scaled = optimizer.scale_loss(loss) if scaling else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        scale = tf.cast(optimizer.dynamic_scale, tf.float32) if scaling else tf.constant(1.0)
        norm = tf.linalg.global_norm(grads) / scale
        if clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm * scale, use_norm=norm * scale)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, norm, examples

    return step_fn


def _reduced(strategy: tf.distribute.Strategy, step_fn, inputs):
    loss, norm, examples = strategy.run(step_fn, args=inputs)
    return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.MEAN, examples, axis=None))


def make_train_step(strategy: tf.distribute.Strategy, model, optimizer,
                    clip_norm: float | None, label_smoothing: float = 0.0):
    """A compiled single step on one (distributed) batch: ``step(inputs)`` ->
    (loss, gradient norm, examples); see ``_replica_step``."""
    step_fn = _replica_step(model, optimizer, clip_norm, label_smoothing)
    return tf.function(lambda inputs: _reduced(strategy, step_fn, inputs),
                       reduce_retracing=True)


def make_train_loop(strategy: tf.distribute.Strategy, model, optimizer,
                    clip_norm: float | None, label_smoothing: float = 0.0):
    """Compiled ``run(iterator, count)``: up to ``count`` steps without returning to the host.

    Stops early after a batch whose loss, or (without loss scaling) whose
    gradient norm, is not finite. Returns that last batch's loss and norm,
    the examples of all batches run, the batches that loss scaling skipped
    and how many of them came after the last applied update. The step count
    stays the optimizer's, read by the caller after the call.
    """
    step_fn = _replica_step(model, optimizer, clip_norm, label_smoothing)
    scaling = optimizer is not inner_optimizer(optimizer)
    iterations = inner_optimizer(optimizer).iterations

    @tf.function
    def run(iterator, count):
        loss, norm, examples = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        skipped, skipped_last, batches = tf.constant(0), tf.constant(0), tf.constant(0)
        finite = tf.constant(True)
        while batches < count and finite:
            before = tf.identity(iterations.value)
            loss, norm, n = _reduced(strategy, step_fn, next(iterator))
            examples += n
            batches += 1
            applied = tf.not_equal(iterations.value, before)
            skipped += tf.cast(~applied, tf.int32)
            skipped_last = tf.where(applied, 0, skipped_last + 1)
            finite = tf.math.is_finite(loss) & (tf.math.is_finite(norm) | scaling)
        return loss, norm, examples, skipped, skipped_last

    return run
