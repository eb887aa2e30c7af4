"""tf.Transform: analyses the training split and exports the serving-time
preprocessing graph (raw absolute points -> the tutorial's normalised ink).

The analysis computes the class vocabulary (with counts) and the ink-length
quantiles that the trainer uses as bucket boundaries. The exported graph takes
raw drawings, so a serving model can accept the strokes a player draws.
"""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import CompressionTypes, FileSystems

import tfrecord_schema as schema
from pipeline.atomic_files import write_atomically

NUM_LENGTH_BUCKETS = 16
_VOCABULARY_FILE = "assets/" + schema.CLASS_VOCABULARY
METADATA_TEMP = "metadata"  # under the analysis's temp folder

_ARROW_SCHEMA = pa.schema([
    pa.field(schema.RAW_X, pa.large_list(pa.float32())),
    pa.field(schema.RAW_Y, pa.large_list(pa.float32())),
    pa.field(schema.RAW_STROKE_END, pa.large_list(pa.float32())),
    pa.field(schema.WORD, pa.large_list(pa.large_binary())),
])


def raw_feature_spec(tf) -> dict:
    """What the transform graph takes: one drawing's absolute points."""
    return {
        schema.RAW_X: tf.io.VarLenFeature(tf.float32),
        schema.RAW_Y: tf.io.VarLenFeature(tf.float32),
        schema.RAW_STROKE_END: tf.io.VarLenFeature(tf.float32),
        schema.WORD: tf.io.FixedLenFeature([], tf.string),
    }


def normalize_ragged(tf, x, y, stroke_end):
    """parse_line on ragged [batch, points] tensors: the trainer's TensorFlow
    normalisation (``trainer.preprocess.normalize_strokes``, the one the
    export and the augmentation run too) on the padded batch, ragged again.
    Same float32 operations as the NumPy writer, so the same ink bit for bit."""
    from trainer.preprocess import normalize_strokes

    ink, lengths = normalize_strokes(x.to_tensor(), y.to_tensor(), stroke_end.to_tensor(),
                                     x.row_lengths())
    return tf.RaggedTensor.from_tensor(ink, lengths=lengths)


def preprocessing_fn(inputs: dict) -> dict:
    """tf.Transform preprocessing: normalised ink plus the analysed statistics."""
    import tensorflow as tf
    import tensorflow_transform as tft

    x = tf.RaggedTensor.from_sparse(inputs[schema.RAW_X])
    y = tf.RaggedTensor.from_sparse(inputs[schema.RAW_Y])
    ends = tf.RaggedTensor.from_sparse(inputs[schema.RAW_STROKE_END])
    ink = normalize_ragged(tf, x, y, ends)
    # Read straight from the input, so the analysis does not run the normalisation.
    length = tf.cast(x.row_lengths(), tf.int64) - 1
    batch = tf.shape(length, out_type=tf.int64)[0]

    word = inputs[schema.WORD]
    tft.vocabulary(word, vocab_filename=schema.CLASS_VOCABULARY, store_frequency=True)
    boundaries = tft.quantiles(tf.cast(length, tf.float32), NUM_LENGTH_BUCKETS, epsilon=0.001)
    return {
        schema.TRANSFORMED_INK: ink.merge_dims(1, 2).to_sparse(),
        schema.TRANSFORMED_LENGTH: length,
        schema.LENGTH_BOUNDARIES: tf.tile(boundaries, [batch, 1]),
        "length_min": tf.fill([batch], tft.min(length)),
        "length_max": tf.fill([batch], tft.max(length)),
        "length_mean": tf.fill([batch], tft.mean(tf.cast(length, tf.float32))),
        "num_examples": tf.fill([batch], tft.size(length)),
    }


def to_record_batch(rows: list) -> pa.RecordBatch:
    """Training drawings -> one Arrow RecordBatch, the input format that lets
    tf.Transform skip per-instance conversion. ``rows`` are (word, points)."""
    lengths = np.fromiter((len(p) for _, p in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    points = np.concatenate([p for _, p in rows]) if rows else np.zeros((0, 3), np.float32)
    offsets_arr = pa.array(offsets)

    def column(values):
        return pa.LargeListArray.from_arrays(offsets_arr, pa.array(values, pa.float32()))

    words = pa.LargeListArray.from_arrays(
        pa.array(np.arange(len(rows) + 1, dtype=np.int64)),
        pa.array([w.encode("utf-8") for w, _ in rows], pa.large_binary()))
    return pa.RecordBatch.from_arrays(
        [column(points[:, 0]), column(points[:, 1]), column(points[:, 2]), words],
        schema=_ARROW_SCHEMA)


def tensor_adapter_config():
    """How tf.Transform turns our RecordBatches into tensors."""
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

    tf_schema = schema_utils.schema_from_feature_spec(raw_feature_spec(tf))
    representations = tensor_representation_util.InferTensorRepresentationsFromMixedSchema(tf_schema)
    return tensor_adapter.TensorAdapterConfig(_ARROW_SCHEMA, representations)


def length_stats(transform_output_dir: str) -> dict:
    """Reads the analysed ink-length statistics back out of the exported graph."""
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(transform_output_dir)
    with tf.Graph().as_default():
        two_points = tf.SparseTensor(indices=[[0, 0], [0, 1]], values=[0.0, 1.0], dense_shape=[1, 2])
        probe = {
            schema.RAW_X: two_points,
            schema.RAW_Y: two_points,
            schema.RAW_STROKE_END: two_points,
            schema.WORD: tf.constant([b""]),
        }
        with tf.compat.v1.Session() as session:
            outputs = output.transform_raw_features(probe)
            session.run(tf.compat.v1.tables_initializer())
            out = session.run({k: v for k, v in outputs.items() if k != schema.TRANSFORMED_INK})
    quantiles = [float(v) for v in out[schema.LENGTH_BOUNDARIES][0]]
    return {
        "num_examples": int(out["num_examples"][0]),
        "min": int(out["length_min"][0]),
        "max": int(out["length_max"][0]),
        "mean": float(out["length_mean"][0]),
        "quantiles": quantiles,
        "boundaries": sorted({int(np.ceil(q)) for q in quantiles if q >= 1}),
    }


class AnalyzeTrainingSplit(beam.PTransform):
    """Runs tf.Transform's analysis over batches of training drawings and
    writes ``transform_output/`` and ``ink_length_stats.json``.

    Every step may run more than once (a runner retries a failed bundle, a
    lost worker's bundle runs again, a zombie may finish late), so none moves
    or deletes what an earlier attempt made. tf.Transform's own
    ``WriteTransformFn`` renames a temp folder into place, which a second
    attempt finds gone; here the analysis and the metadata write into unique
    folders under ``temp_dir`` and ``PublishTransformOutput`` copies them file
    by file (each through a temp name and a rename), so an attempt rewrites
    the same bytes under the same names.
    """

    def __init__(self, output_dir: str, temp_dir: str):
        super().__init__()
        self._output_dir = output_dir
        self._temp_dir = temp_dir

    def expand(self, batches):
        import tensorflow_transform.beam as tft_beam
        from tensorflow_transform.beam.tft_beam_io import beam_metadata_io

        transform_dir = FileSystems.join(self._output_dir, schema.TRANSFORM_DIR)
        with tft_beam.Context(temp_dir=self._temp_dir, force_tf_compat_v1=True):
            saved_model_dir, metadata = (
                (batches, tensor_adapter_config())
                | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn))
            metadata_dir = metadata | "WriteMetadata" >> beam_metadata_io.WriteMetadata(
                FileSystems.join(self._temp_dir, METADATA_TEMP), batches.pipeline,
                write_to_unique_subdirectory=True)
        published = saved_model_dir | "PublishTransformOutput" >> beam.Map(
            publish_transform_output, beam.pvalue.AsSingleton(metadata_dir), transform_dir)
        return published | "WriteLengthStats" >> beam.Map(
            _write_length_stats, FileSystems.join(self._output_dir, schema.LENGTH_STATS_FILE))


def publish_transform_output(saved_model_dir: str, metadata_dir: str, transform_dir: str) -> str:
    """Copies the analysis's SavedModel and metadata into ``transform_dir``
    (tf.Transform's layout: ``transform_fn/``, ``transformed_metadata/``),
    each file written to a temp name and renamed into place. Idempotent: the
    sources are never moved, so an attempt that runs again, or one that failed
    half way, writes the same bytes to the same names. Returns ``transform_dir``."""
    import tensorflow_transform as tft

    for source, name in ((saved_model_dir, tft.TFTransformOutput.TRANSFORM_FN_DIR),
                         (metadata_dir, tft.TFTransformOutput.TRANSFORMED_METADATA_DIR)):
        target = FileSystems.join(transform_dir, name)
        for rel in sorted(_tree(source)):
            with FileSystems.open(FileSystems.join(source, rel),
                                  compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
            if name == tft.TFTransformOutput.TRANSFORM_FN_DIR and rel == _VOCABULARY_FILE:
                data = order_class_vocabulary(data)
            write_atomically(FileSystems.join(target, rel), data)
    return transform_dir


def _tree(folder: str) -> list[str]:
    """Every file under ``folder``, as paths relative to it."""
    base = folder.rstrip("/")
    found = FileSystems.match([FileSystems.join(base, "**")])[0].metadata_list
    return [m.path[len(base):].lstrip("/") for m in found if not m.path.endswith("/")]


def order_class_vocabulary(data: bytes) -> bytes:
    """The class vocabulary in the classes file's order (by name).

    ``tft.vocabulary`` orders by frequency; a consumer that maps words to ids
    with it must get the trainer's ``class_index``. No op of the graph reads
    the file, so reordering it leaves the graph as it was.
    """
    lines = data.decode("utf-8").splitlines()
    lines.sort(key=lambda line: line.split(" ", 1)[1])  # "count word", store_frequency
    return ("\n".join(lines) + "\n").encode("utf-8")


def _write_length_stats(transform_dir: str, path: str) -> dict:
    stats = length_stats(transform_dir)
    write_atomically(path, json.dumps(stats, indent=1).encode("utf-8"))
    return stats
