"""Where a run's weights start: its own last checkpoint, resumed exactly
(weights, Adam's moments and step, and the loss scale under mixed precision),
or another run's checkpoint or export (a warm start, of the same
architecture only); and the model config saved beside the checkpoints, which
tells one architecture from another.
"""
from __future__ import annotations

import argparse
import json
import os

import tensorflow as tf

from trainer.errors import TrainerError
from trainer.export import export_config, load_export
from trainer.model import ModelConfig
from trainer.train_step import inner_optimizer

CONFIG_FILE = "model_config.json"


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
