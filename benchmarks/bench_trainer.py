"""Training throughput of the trainer against a plain TF2 port of the tutorial,
and single-drawing latency of the exported model.

Both models have the tutorial's default size (conv 48/64/96, three
bidirectional LSTM layers of 128, dropout 0.3) and train with batch size 64
on the same TFRecords, written from the real shared sample (344 classes x 25
drawings) the way the tutorial's create_dataset.py writes them. The baseline
is what a straight port looks like: per-record parsing, ``padded_batch`` to
each batch's longest drawing, Keras ``Bidirectional(LSTM)`` layers fed a
mask, a compiled train step. The trainer uses its own input pipeline (batched
parsing, length bucketing with quantile boundaries as the pipeline's
ink_length_stats.json gives them) and model, three ways: without bucketing,
bucketed batches of 64, and bucketed batches sized by a budget of points
(``--batch_tokens``). Each contender's padded points per batch (batch size x
padded length) are reported beside its throughput: they set a batch's
activation memory, which the budget bounds.

    python benchmarks/bench_trainer.py [--steps 60] [--warmup 15] [--batch_tokens 2816]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import tfrecord_schema as schema
from pipeline.parse import parse_line
from trainer import data
from trainer.export import RAW_SIGNATURE, export_model, load_export
from trainer.model import ModelConfig, build_model
from trainer.predict import drawing_points
from trainer.train_step import make_optimizer, make_train_step

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO / "data" / "real_sample"
BATCH = 64


def write_records(sample: Path, out_dir: str, shards: int = 10) -> tuple[str, list[str], list[str]]:
    """Tutorial-format shards of every drawing; returns (pattern, classes, ndjson lines)."""
    files = sorted(sample.glob("*.ndjson"))
    classes = [f.stem for f in files]
    lines = [(line, i) for i, f in enumerate(files) for line in f.read_text().splitlines()]
    random.Random(0).shuffle(lines)
    writers = [tf.io.TFRecordWriter(os.path.join(out_dir, schema.shard_name(schema.TRAIN, i, shards)))
               for i in range(shards)]
    lengths = []
    for n, (line, index) in enumerate(lines):
        ink, _ = parse_line(line)
        lengths.append(len(ink))
        example = tf.train.Example()
        example.features.feature[schema.INK].float_list.value.extend(ink.flatten())
        example.features.feature[schema.SHAPE].int64_list.value.extend(ink.shape)
        example.features.feature[schema.CLASS_INDEX].int64_list.value.append(index)
        writers[n % shards].write(example.SerializeToString())
    for w in writers:
        w.close()
    # What the pipeline's ink_length_stats.json holds: 16 quantile buckets.
    quantiles = np.quantile(lengths, np.linspace(0, 1, 17)[1:-1])
    with open(os.path.join(out_dir, schema.LENGTH_STATS_FILE), "w") as f:
        json.dump({"boundaries": sorted({int(np.ceil(q)) for q in quantiles}),
                   "max": int(max(lengths))}, f)
    return (os.path.join(out_dir, schema.shard_pattern(schema.TRAIN)), classes,
            [line for line, _ in lines])


def baseline_dataset(pattern: str) -> tf.data.Dataset:
    """The tutorial's input_fn in TF2: parse each record, pad each batch to its longest."""
    spec = schema.feature_spec(tf)

    def parse(record):
        f = tf.io.parse_single_example(record, spec)
        ink = tf.reshape(tf.sparse.to_dense(f[schema.INK]), [-1, 3])
        return (ink, tf.cast(f[schema.SHAPE][0], tf.int32)), f[schema.CLASS_INDEX][0]

    ds = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).shuffle(10000, seed=0).repeat()
    return ds.map(parse).padded_batch(BATCH, padded_shapes=(([None, 3], []), [])).prefetch(1)


def baseline_model(num_classes: int) -> keras.Model:
    """The tutorial's model with Keras layers: conv1d stack, masked BiLSTMs, summed outputs."""
    ink = keras.Input((None, 3))
    lengths = keras.Input((), dtype="int32")
    mask = keras.layers.Lambda(lambda t: tf.sequence_mask(t[1], tf.shape(t[0])[1]))([ink, lengths])
    x = ink
    for i, (filters, width) in enumerate(zip((48, 64, 96), (5, 5, 3))):
        if i > 0:
            x = keras.layers.Dropout(0.3)(x)
        x = keras.layers.Conv1D(filters, width, padding="same")(x)
    for _ in range(3):
        x = keras.layers.Bidirectional(keras.layers.LSTM(128, return_sequences=True))(x, mask=mask)
    summed = keras.layers.Lambda(
        lambda t: tf.reduce_sum(t[0] * tf.cast(t[1], t[0].dtype)[..., None], axis=1))([x, mask])
    return keras.Model([ink, lengths], keras.layers.Dense(num_classes)(summed))


def baseline_step(model: keras.Model):
    optimizer = keras.optimizers.Adam(1e-4, global_clipnorm=9.0)

    @tf.function(reduce_retracing=True)
    def step(inputs, labels):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda batch: step(*batch)


def throughput(step, batches, warmup: int, steps: int) -> dict:
    """Examples per second over ``steps`` steps after ``warmup`` untimed ones,
    and the padded points (batch size x padded length) per batch, the figure
    that sets a batch's activation memory."""
    iterator = iter(batches)
    for _ in range(warmup):
        np.asarray(step(next(iterator)))
    examples, points = 0, []
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        ink = batch[0]["ink"] if isinstance(batch[0], dict) else batch[0][0]
        examples += int(ink.shape[0])
        points.append(int(ink.shape[0]) * int(ink.shape[1]))
        out = step(batch)
    np.asarray(out)
    return {"examples_per_s": examples / (time.perf_counter() - start),
            "mean_points": float(np.mean(points)), "max_points": int(max(points))}


def latency(export_dir: str, lines: list[str], n: int) -> tuple[float, float]:
    """p50 and p99 milliseconds of one-drawing requests to the raw-strokes signature."""
    loaded, _ = load_export(export_dir)
    serve = loaded.signatures[RAW_SIGNATURE]
    times = []
    for i, line in enumerate(lines[:n + 10]):
        x, y, ends = drawing_points(json.loads(line))
        start = time.perf_counter()
        serve(x=tf.constant(x[None]), y=tf.constant(y[None]), stroke_end=tf.constant(ends[None]),
              lengths=tf.constant([len(x)], tf.int32))["classes"].numpy()
        if i >= 10:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample", default=str(REAL_SAMPLE))
    p.add_argument("--steps", type=int, default=60, help="timed steps per contender")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps before timing")
    p.add_argument("--latency_requests", type=int, default=200)
    p.add_argument("--batch_tokens", type=int, default=2816,
                   help="points per batch of the budgeted contender (64 x 44, the padded "
                        "length of an average bucketed batch)")
    p.add_argument("--max_batch", type=int, default=256,
                   help="most drawings per batch of the budgeted contender")
    args = p.parse_args(argv)
    keras.utils.set_random_seed(0)
    warnings.filterwarnings("ignore", message=".*does not support masking")
    devices = tf.config.list_physical_devices("GPU")
    device = tf.config.experimental.get_device_details(devices[0]).get("device_name", "GPU") \
        if devices else "CPU (%d cores visible)" % os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        pattern, classes, lines = write_records(Path(args.sample), tmp)
        boundaries = data.length_boundaries(pattern)
        print("%d drawings, %d classes, bucket boundaries %s; device: %s"
              % (len(lines), len(classes), boundaries, device), flush=True)

        base = baseline_model(len(classes))
        results = {"baseline": throughput(baseline_step(base), baseline_dataset(pattern),
                                          args.warmup, args.steps)}
        base_rate = results["baseline"]["examples_per_s"]
        report("baseline (padded_batch, masked Keras Bidirectional)", results["baseline"],
               base_rate)

        config = ModelConfig(num_classes=len(classes), mixed_precision=bool(devices))
        contenders = (("without bucketing", BATCH, None, None),
                      ("default", BATCH, boundaries, None),
                      ("batch_tokens=%d" % args.batch_tokens, args.max_batch, boundaries,
                       args.batch_tokens))
        for name, batch_size, bucket_by, tokens in contenders:
            model = build_model(config)
            optimizer = make_optimizer(1e-4, config.mixed_precision)
            step = make_train_step(tf.distribute.get_strategy(), model, optimizer, 9.0)
            batches = data.make_dataset(pattern, batch_size, classes, training=True,
                                        boundaries=bucket_by, seed=0, batch_tokens=tokens)
            results[name] = throughput(step, batches, args.warmup, args.steps)
            report("trainer, " + name, results[name], base_rate)

        export_dir = export_model(model, classes, os.path.join(tmp, "export"), 0)
        p50, p99 = latency(export_dir, lines, args.latency_requests)
        print("single-drawing predict latency of the export: p50 %.1f ms, p99 %.1f ms"
              % (p50, p99), flush=True)
    return {"device": device, "load_average_1m": os.getloadavg()[0], "results": results,
            "predict_p50_ms": p50, "predict_p99_ms": p99}


def report(name: str, result: dict, base_rate: float) -> None:
    print("%s: %.1f examples/s (%.2fx the baseline), padded points per batch mean %.0f max %d"
          % (name, result["examples_per_s"], result["examples_per_s"] / base_rate,
             result["mean_points"], result["max_points"]), flush=True)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
