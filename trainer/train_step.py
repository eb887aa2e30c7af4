"""One training step, compiled, and a compiled loop of them: the loss over
the global batch, the replicas' gradients summed, then clipped by their
global norm, then Adam (with dynamic loss scaling under mixed precision).

The loop runs ``--steps_per_execution`` steps in one call without returning
to the host and stops early at a batch whose loss or gradient norm is not
finite; ``trainer.train`` drives it and reads the step count from the
optimizer after each call.
"""
from __future__ import annotations

import keras
import tensorflow as tf


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
