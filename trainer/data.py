"""tf.data input: TFRecord shards -> padded, length-bucketed batches.

Reads both the pipeline's records and the tutorial's ``create_dataset.py``
records: only ``ink``, ``shape`` and ``class_index`` are needed. Files are
read in parallel, parsed a few hundred records at a time and grouped into
batches of similar ink length, so little compute goes to padding.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

import dataset_manifest
import local_files
import tfrecord_schema as schema
from trainer.augment import AugmentConfig, augment_ink
from trainer.errors import TrainerError
from trainer.raster import RASTER, render

# Used when the pipeline's ink_length_stats.json is absent: roughly the
# quantiles of simplified Quick, Draw! drawings' lengths.
DEFAULT_BOUNDARIES = (12, 16, 20, 24, 28, 32, 36, 40, 46, 52, 60, 70, 82, 100)
TAIL_STEP = 1.25
TAIL_LIMIT = 1000  # longest drawing assumed when the statistics do not say
PARSE_BATCH = 256
SHUFFLE_BUFFER = 10000
LENGTHS = "lengths"
# What a bad record raises while tf.data reads it.
DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)


def list_files(pattern: str) -> list[str]:
    """The files matching a glob on any TensorFlow filesystem (local, gs://).
    A local match that is not a regular file is refused: TensorFlow's reader
    would wait forever on a FIFO and never finish a device. A local folder that
    exists as written is that folder, whatever its name holds ("run [1]",
    "data, 2017"): ``local_files.literal_folder``."""
    files: list[str] = []
    for part in local_files.split_list(pattern):
        if "://" not in part and os.path.lexists(part):  # a file named with * ? [ \\ is itself
            files.append(part)
            continue
        try:
            found = tf.io.gfile.glob(local_files.literal_folder(part))
            # TensorFlow adds "./" to a relative pattern that starts with a class
            files.extend(f[2:] if f.startswith("./") and not part.startswith("./") else f for f in found)
        except tf.errors.OpError as e:
            raise TrainerError("cannot list %r: %s" % (part, e.message)) from e
    if not files:
        raise TrainerError("no file matches %r" % pattern)
    for path in files:
        if "://" not in path:
            try:
                local_files.check_regular(path)
            except local_files.NotARegularFile as e:
                raise TrainerError(str(e)) from None
            except OSError as e:  # a link to nothing
                raise TrainerError("cannot read %s: %s" % (path, e.strerror)) from None
    return sorted(files)


def read_small_file(path: str) -> bytes:
    """The bytes of a small input file on any TensorFlow filesystem; a local
    one only if it is a regular file (a FIFO would block the read)."""
    if "://" not in path:
        local_files.check_regular(path)
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def read_classes(path: str) -> list[str]:
    """Class names, one a line; the line number is the class index."""
    try:
        return schema.parse_classes(read_small_file(path))
    except tf.errors.OpError as e:
        raise TrainerError("cannot read classes file %r: %s" % (path, e.message)) from e
    except OSError as e:
        raise TrainerError("cannot read classes file %r: %s" % (path, e.strerror or e)) from e
    except (ValueError, UnicodeDecodeError) as e:
        raise TrainerError("classes file %r: %s" % (path, e)) from e


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
        stats = json.loads(read_small_file(stats_path))
        boundaries = [int(b) for b in stats["boundaries"]]
        max_length = int(stats.get("max", max_length))
    except (tf.errors.OpError, OSError, ValueError, KeyError, TypeError) as e:
        raise TrainerError("cannot read length boundaries from %r: %s" % (stats_path, e)) from e
    return extend_tail(boundaries or DEFAULT_BOUNDARIES, max_length)


def extend_tail(boundaries, max_length: int) -> list[int]:
    """Sorted positive boundaries, with more above the last one up to ``max_length``."""
    result = sorted({int(b) for b in boundaries if int(b) > 0})
    while result and result[-1] * TAIL_STEP < max_length:
        result.append(int(result[-1] * TAIL_STEP) + 1)
    return result


def _first_failure(ok: tf.Tensor, files: tf.Tensor, *what) -> tf.Operation:
    """Fails the input pipeline with one line naming the file of the first bad record.

    ``what`` are strings and per-record string vectors (the bad record's value
    is shown), joined into the message.
    """
    first = tf.argmin(tf.cast(ok, tf.int32))
    parts = [p if isinstance(p, str) or p.shape.rank == 0 else p[first] for p in what]
    return tf.debugging.Assert(tf.reduce_all(ok), [tf.strings.join(
        ["a record in ", files[first], " "] + parts)], summarize=1)


def _parse_batch(serialized: tf.Tensor, files: tf.Tensor, classes: tf.Tensor,
                 dropped: tf.Variable | None):
    """Parses a vector of serialized Examples into per-example ragged ink.

    Checks every record (shape, ink size against the shape, finite values,
    class_index range, and the ``word`` feature against the classes file
    where the records carry it), naming the file of the first bad one.
    Zero-length drawings are counted in ``dropped`` for the caller to drop.
    """
    num_classes = tf.shape(classes, out_type=tf.int64)[0]
    spec = schema.feature_spec(tf)
    spec[schema.INK] = tf.io.RaggedFeature(tf.float32)
    spec[schema.WORD] = tf.io.RaggedFeature(tf.string)
    parsed = tf.io.parse_example(serialized, spec)
    shape = parsed[schema.SHAPE]
    labels64 = parsed[schema.CLASS_INDEX][:, 0]
    flat = parsed[schema.INK]
    words = parsed[schema.WORD]
    in_range = (labels64 >= 0) & (labels64 < num_classes)
    named = tf.gather(classes, tf.clip_by_value(labels64, 0, num_classes - 1))
    word = tf.where(words.row_lengths() > 0,
                    words.to_tensor(default_value="", shape=[None, 1])[:, 0], named)
    finite = tf.reduce_all(tf.math.is_finite(flat), axis=1)
    checks = [
        _first_failure(shape[:, 1] == schema.INK_CHANNELS, files,
                       "has shape[1] != %d" % schema.INK_CHANNELS),
        _first_failure(tf.cast(flat.row_lengths(), tf.int64) == shape[:, 0] * shape[:, 1], files,
                       "has ink whose size does not match its shape"),
        _first_failure(finite, files, "has non-finite ink values (NaN or infinity)"),
        _first_failure(in_range, files, "has class_index ", tf.strings.as_string(labels64),
                       " but the classes file lists ", tf.strings.as_string(num_classes),
                       " classes: the classes file does not match the labels"),
        _first_failure(tf.equal(word, named) | ~in_range, files, "is a '", word,
                       "' labelled ", tf.strings.as_string(labels64),
                       ", which the classes file calls '", named,
                       "': the classes file does not match the labels"),
    ]
    lengths = tf.cast(shape[:, 0], tf.int32)
    if dropped is not None:
        checks.append(dropped.assign_add(tf.reduce_sum(tf.cast(lengths == 0, tf.int64))))
    with tf.control_dependencies(checks):
        ink = tf.RaggedTensor.from_row_lengths(
            tf.reshape(flat.values, [-1, schema.INK_CHANNELS]), lengths)
    return {schema.INK: ink, LENGTHS: lengths}, tf.cast(labels64, tf.int32)


def _dense_ink(features: dict, label: tf.Tensor):
    """One unbatched example's ink (a ragged-rank-0 tensor) as a plain tensor."""
    ink = features[schema.INK]
    if isinstance(ink, tf.RaggedTensor):
        ink = ink.to_tensor()
    return {schema.INK: ink, LENGTHS: features[LENGTHS]}, label


def bucket_batch_sizes(boundaries: list[int], batch_size: int,
                       batch_tokens: int | None = None) -> list[int]:
    """The batch size of each length bucket (one more than there are boundaries).

    Without a budget every bucket has ``batch_size``. With ``batch_tokens``, a
    bucket's batch holds as many drawings as fit in that many points when
    padded to the bucket's longest length (at least one, at most
    ``batch_size``). The last bucket is open-ended; it is sized for drawings
    up to ``TAIL_STEP`` times its lower boundary, which the tail boundaries
    make the longest drawing.
    """
    if not batch_tokens:
        return [batch_size] * (len(boundaries) + 1)
    longest = [b - 1 for b in boundaries] + [int(boundaries[-1] * TAIL_STEP) + 1]
    return [max(1, min(batch_size, batch_tokens // n)) for n in longest]


def make_dataset(pattern: str | list[str], batch_size: int, classes: list[str], *,
                 training: bool, boundaries: list[int] | None = None,
                 seed: int | None = None,
                 input_context: tf.distribute.InputContext | None = None,
                 dropped: tf.Variable | None = None,
                 batch_tokens: int | None = None,
                 augment: AugmentConfig | None = None,
                 raster_size: int | None = None) -> tf.data.Dataset:
    """Batches of ``({"ink": [B, T, 3], "lengths": [B]}, labels [B])``.

    Training data repeats forever, shuffled; eval data is read once in order.
    With ``boundaries`` the batches are bucketed by ink length (every batch is
    padded only to its own longest drawing); ``batch_tokens`` then sizes each
    bucket's batches by a budget of points (``bucket_batch_sizes``).
    ``input_context`` shards the input between the workers of a distribution
    strategy. Zero-length drawings are left out and counted in ``dropped``
    (an int64 variable) when given. ``augment`` changes training drawings
    (never eval ones), each with its own stateless seed from ``seed`` and its
    position in the stream. ``raster_size`` adds each drawing rendered as an
    image (``RASTER``) to the batch, for the raster CNN.
    """
    if batch_tokens and not boundaries:
        raise TrainerError("a budget of points per batch needs length bucketing")
    files = list_files(pattern) if isinstance(pattern, str) else list(pattern)
    class_names = tf.constant(classes, tf.string)
    ds = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            shard_records = True
    if training:
        ds = ds.shuffle(len(files), seed=seed).repeat()
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f).map(lambda r: (r, f)),
                       cycle_length=min(len(files), 8),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if shard_records:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed)
    ds = ds.batch(PARSE_BATCH).map(lambda s, f: _parse_batch(s, f, class_names, dropped),
                                   num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=not training).unbatch()
    ds = ds.map(_dense_ink).filter(lambda features, label: features[LENGTHS] > 0)
    if training and augment is not None:
        base = tf.constant(0 if seed is None else seed, tf.int64)

        def changed(index, example):
            features, label = example
            ink, length = augment_ink(features[schema.INK], features[LENGTHS],
                                      tf.stack([base, index]), augment)
            return {schema.INK: ink, LENGTHS: length}, label

        ds = ds.enumerate().map(changed, num_parallel_calls=tf.data.AUTOTUNE,
                                deterministic=False)
    padded_shapes = ({schema.INK: [None, schema.INK_CHANNELS], LENGTHS: []}, [])
    if boundaries:
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda features, label: features[LENGTHS],
            bucket_boundaries=list(boundaries),
            bucket_batch_sizes=bucket_batch_sizes(boundaries, batch_size, batch_tokens),
            padded_shapes=padded_shapes, drop_remainder=training)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=padded_shapes, drop_remainder=training)
    if raster_size:
        def with_raster(features, label):
            image = render(features[schema.INK], features[LENGTHS], raster_size)
            return dict(features, **{RASTER: image}), label

        ds = ds.map(with_raster, num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=not training)
    return ds.prefetch(tf.data.AUTOTUNE)


# The frame of an error raised inside a tf.function (several steps run per
# call): its header, the stack of the node's definition, the node's name.
_GRAPH_FRAME = re.compile(r"^(Graph execution error:|Detected at node |File \"|\[\[\{\{node )")


def data_error(message: str) -> str:
    """One line from a TensorFlow input error: the failed check's text, else
    the first line that is not the frame of a graph execution error."""
    lines = [line.strip() for line in (message or "").splitlines()]
    lines = [line for line in lines if line and not _GRAPH_FRAME.match(line)] or ["unknown error"]
    prefix = "assertion failed: ["
    line = next((line for line in lines if prefix in line), lines[0])
    if prefix in line:  # tf.debugging.Assert's data, printed with quotes escaped
        line = line.split(prefix, 1)[1].rstrip("]").replace("\\'", "'")
    return line


def verify_datasets(patterns: list[str], classes_file: str, checksums: bool = True) -> int:
    """Checks the pipeline's manifest of every folder the data comes from.

    A folder the pipeline wrote must hold exactly the files its manifest
    lists, with their sizes and (with ``checksums``) CRC-32C, which also pins
    the record counts; a folder without a manifest and without anything only
    the pipeline writes (the tutorial's create_dataset.py output) passes. A
    classes file from elsewhere must match the one the pipeline wrote beside
    the records. Returns the number of folders with a manifest.
    """
    folders = sorted({os.path.dirname(part.strip()) or "."
                      for pattern in patterns for part in pattern.split(",")})
    verified = 0
    for folder in folders:
        try:
            manifest = dataset_manifest.verify(folder, checksums=checksums)
        except dataset_manifest.ManifestError as e:
            raise TrainerError("dataset refused: %s" % e) from e
        if manifest is None:
            continue
        verified += 1
        beside = os.path.join(folder, schema.CLASSES_FILE)
        if schema.CLASSES_FILE in manifest.get("files", {}) and \
                os.path.normpath(beside) != os.path.normpath(classes_file) and \
                read_classes(beside) != read_classes(classes_file):
            raise TrainerError("%s differs from %s, the classes file of the dataset in %s"
                               % (classes_file, beside, folder))
    return verified


def scan(files: list[str], classes: list[str], what: str) -> tuple[int, int]:
    """Reads a whole dataset through the input pipeline's checks, before training.

    Returns (examples kept, zero-length examples left out); a bad record is a
    ``TrainerError`` naming its file. Meant for the eval set, which is read
    whole at every evaluation anyway: a fault in it then stops the run before
    step 0 instead of after the last step.
    """
    dropped = tf.Variable(0, dtype=tf.int64, trainable=False)
    kept = 0
    try:
        for _, labels in make_dataset(files, PARSE_BATCH, classes, training=False,
                                      dropped=dropped):
            kept += int(labels.shape[0])
    except DATA_ERRORS as e:
        raise TrainerError("bad %s data: %s" % (what, data_error(e.message))) from e
    if kept == 0:
        raise TrainerError("empty dataset: the %s data has no drawing with ink (%d zero-length "
                           "examples)" % (what, int(dropped.numpy())))
    return kept, int(dropped.numpy())


def check_records(files: list[str], classes: list[str], per_file: int = 64) -> int:
    """Reads the first records of every file before any training starts.

    Turns the usual mistakes into clear errors naming the file: an empty
    dataset, a corrupt file, a record without the tutorial's features, ink
    whose size disagrees with its shape, non-finite ink, a class index beyond
    the classes file, or (for the pipeline's records, which carry ``word``) a
    label whose class name differs from the classes file's. The input
    pipeline checks every later record the same way. Returns the number of
    records read.
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
    shape = list(features[schema.SHAPE].int64_list.value)
    ink = features[schema.INK].float_list.value
    if len(shape) != 2 or shape[1] != schema.INK_CHANNELS:
        raise TrainerError("record in %s has shape %s, not [length, %d]"
                           % (path, shape, schema.INK_CHANNELS))
    if len(ink) != shape[0] * shape[1]:
        raise TrainerError("record in %s has %d ink values for shape %s: its ink size does "
                           "not match its shape" % (path, len(ink), shape))
    if not np.isfinite(np.asarray(ink, np.float32)).all():
        raise TrainerError("record in %s has non-finite ink values (NaN or infinity)" % path)
    index = features[schema.CLASS_INDEX].int64_list.value[0]
    if not 0 <= index < len(classes):
        raise TrainerError("record in %s has class_index %d but the classes file lists "
                           "%d classes: the classes file does not match the labels"
                           % (path, index, len(classes)))
    if schema.WORD in features and features[schema.WORD].bytes_list.value:
        word = features[schema.WORD].bytes_list.value[0].decode("utf-8")
        if word != classes[index]:
            raise TrainerError("record in %s is a %r labelled %d, which the classes file "
                               "calls %r: the classes file does not match the labels"
                               % (path, word, index, classes[index]))
