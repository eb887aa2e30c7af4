"""tf.data input: TFRecord shards -> padded, length-bucketed batches.

Reads both the pipeline's records and the tutorial's ``create_dataset.py``
records: only ``ink``, ``shape`` and ``class_index`` are needed. Files are
read in parallel, parsed a few hundred records at a time and grouped into
batches of similar ink length, so little compute goes to padding.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

import tfrecord_schema as schema
from trainer.errors import TrainerError

# Used when the pipeline's ink_length_stats.json is absent: roughly the
# quantiles of simplified Quick, Draw! drawings' lengths.
DEFAULT_BOUNDARIES = (12, 16, 20, 24, 28, 32, 36, 40, 46, 52, 60, 70, 82, 100)
TAIL_STEP = 1.25
TAIL_LIMIT = 1000  # longest drawing assumed when the statistics do not say
PARSE_BATCH = 256
SHUFFLE_BUFFER = 10000
LENGTHS = "lengths"


def list_files(pattern: str) -> list[str]:
    """The files matching a glob on any TensorFlow filesystem (local, gs://)."""
    files: list[str] = []
    for part in pattern.split(","):
        try:
            files.extend(tf.io.gfile.glob(part.strip()))
        except tf.errors.OpError as e:
            raise TrainerError("cannot list %r: %s" % (part, e.message)) from e
    if not files:
        raise TrainerError("no file matches %r" % pattern)
    return sorted(files)


def read_classes(path: str) -> list[str]:
    """Class names, one a line; the line number is the class index."""
    try:
        with tf.io.gfile.GFile(path) as f:
            names = [line.rstrip("\r\n") for line in f]
    except tf.errors.OpError as e:
        raise TrainerError("cannot read classes file %r: %s" % (path, e.message)) from e
    while names and not names[-1]:
        names.pop()
    if not names:
        raise TrainerError("classes file %r is empty" % path)
    if len(set(names)) != len(names):
        raise TrainerError("classes file %r lists a class twice" % path)
    return names


def length_boundaries(training_pattern: str, stats_path: str | None = None) -> list[int]:
    """Bucket boundaries from the pipeline's ink-length statistics, when present.

    Looks for ``ink_length_stats.json`` beside the training files unless a path
    is given; without it, falls back to ``DEFAULT_BOUNDARIES``. Quantile
    boundaries leave one bucket for the long tail, where a 300-point drawing
    would pad 63 short ones to its length, so the tail is split further in
    steps of 25% up to the longest drawing.
    """
    max_length = TAIL_LIMIT
    if stats_path is None:
        candidate = os.path.join(os.path.dirname(training_pattern.split(",")[0]),
                                 schema.LENGTH_STATS_FILE)
        if not tf.io.gfile.exists(candidate):
            return extend_tail(DEFAULT_BOUNDARIES, max_length)
        stats_path = candidate
    try:
        with tf.io.gfile.GFile(stats_path) as f:
            stats = json.load(f)
        boundaries = [int(b) for b in stats["boundaries"]]
        max_length = int(stats.get("max", max_length))
    except (tf.errors.OpError, ValueError, KeyError, TypeError) as e:
        raise TrainerError("cannot read length boundaries from %r: %s" % (stats_path, e)) from e
    return extend_tail(boundaries or DEFAULT_BOUNDARIES, max_length)


def extend_tail(boundaries, max_length: int) -> list[int]:
    """Sorted positive boundaries, with more above the last one up to ``max_length``."""
    result = sorted({int(b) for b in boundaries if int(b) > 0})
    while result and result[-1] * TAIL_STEP < max_length:
        result.append(int(result[-1] * TAIL_STEP) + 1)
    return result


def _parse_batch(serialized: tf.Tensor, num_classes: int):
    """Parses a vector of serialized Examples into per-example ragged ink."""
    spec = schema.feature_spec(tf)
    spec[schema.INK] = tf.io.RaggedFeature(tf.float32)
    parsed = tf.io.parse_example(serialized, spec)
    lengths = tf.cast(parsed[schema.SHAPE][:, 0], tf.int32)
    labels = tf.cast(parsed[schema.CLASS_INDEX][:, 0], tf.int32)
    flat = parsed[schema.INK]
    checks = [
        tf.debugging.assert_equal(
            parsed[schema.SHAPE][:, 1], tf.constant(schema.INK_CHANNELS, tf.int64),
            message="record with shape[1] != 3"),
        tf.debugging.assert_equal(
            tf.cast(flat.row_lengths(), tf.int32), lengths * schema.INK_CHANNELS,
            message="record whose ink size does not match its shape"),
        tf.debugging.assert_non_negative(labels, message="record with a negative class_index"),
        tf.debugging.assert_less(
            labels, num_classes,
            message="class_index beyond the classes file (%d classes): the classes "
                    "file does not match the labels" % num_classes),
    ]
    with tf.control_dependencies(checks):
        ink = tf.RaggedTensor.from_row_lengths(
            tf.reshape(flat.values, [-1, schema.INK_CHANNELS]), lengths)
    return {schema.INK: ink, LENGTHS: lengths}, labels


def _dense_ink(features: dict, label: tf.Tensor):
    """One unbatched example's ink (a ragged-rank-0 tensor) as a plain tensor."""
    ink = features[schema.INK]
    if isinstance(ink, tf.RaggedTensor):
        ink = ink.to_tensor()
    return {schema.INK: ink, LENGTHS: features[LENGTHS]}, label


def make_dataset(pattern: str | list[str], batch_size: int, num_classes: int, *,
                 training: bool, boundaries: list[int] | None = None,
                 seed: int | None = None,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Batches of ``({"ink": [B, T, 3], "lengths": [B]}, labels [B])``.

    Training data repeats forever, shuffled; eval data is read once in order.
    With ``boundaries`` the batches are bucketed by ink length (every batch is
    padded only to its own longest drawing). ``input_context`` shards the input
    between the workers of a distribution strategy.
    """
    files = list_files(pattern) if isinstance(pattern, str) else list(pattern)
    ds = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            shard_records = True
    if training:
        ds = ds.shuffle(len(files), seed=seed).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if shard_records:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed)
    ds = ds.batch(PARSE_BATCH).map(lambda s: _parse_batch(s, num_classes),
                                   num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=not training).unbatch()
    ds = ds.map(_dense_ink).filter(lambda features, label: features[LENGTHS] > 0)
    padded_shapes = ({schema.INK: [None, schema.INK_CHANNELS], LENGTHS: []}, [])
    if boundaries:
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda features, label: features[LENGTHS],
            bucket_boundaries=list(boundaries),
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padded_shapes=padded_shapes, drop_remainder=training)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=padded_shapes, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def check_records(files: list[str], classes: list[str], per_file: int = 64) -> int:
    """Reads the first records of every file before any training starts.

    Turns the usual mistakes into clear errors: an empty dataset, a corrupt
    file, a record without the tutorial's features, a class index beyond the
    classes file, or (for the pipeline's records, which carry ``word``) a
    label whose class name differs from the classes file's. Returns the
    number of records read.
    """
    count = 0
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(path).take(per_file):
                _check_example(record.numpy(), classes, path)
                count += 1
        except tf.errors.OpError as e:
            raise TrainerError("corrupt TFRecord file %s: %s" % (path, e.message)) from e
    if count == 0:
        raise TrainerError("empty dataset: no records in %s%s"
                           % (files[0], " and %d more files" % (len(files) - 1)
                              if len(files) > 1 else ""))
    return count


def _check_example(serialized: bytes, classes: list[str], path: str) -> None:
    try:
        features = tf.train.Example.FromString(serialized).features.feature
    except Exception as e:  # protobuf's DecodeError has no stable import path
        raise TrainerError("corrupt record in %s: %s" % (path, e)) from e
    for name in (schema.INK, schema.SHAPE, schema.CLASS_INDEX):
        if name not in features:
            raise TrainerError("record in %s has no %r feature" % (path, name))
    index = features[schema.CLASS_INDEX].int64_list.value[0]
    if not 0 <= index < len(classes):
        raise TrainerError("record in %s has class_index %d but the classes file lists "
                           "%d classes: the classes file does not match the labels"
                           % (path, index, len(classes)))
    if schema.WORD in features:
        word = features[schema.WORD].bytes_list.value[0].decode("utf-8")
        if word != classes[index]:
            raise TrainerError("record in %s is a %r labelled %d, which the classes file "
                               "calls %r: the classes file does not match the labels"
                               % (path, word, index, classes[index]))
