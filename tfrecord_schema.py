"""The on-disk contract between the data pipeline and the trainer.

Both packages read their feature names, dtypes and file names from here, so the
two halves of the project cannot drift apart. The layout is the one the RNN
tutorial's ``create_dataset.py`` writes and ``train_model.py`` reads, plus the
Quick, Draw! metadata kept as extra features.
"""
from __future__ import annotations

# Features the tutorial's train_model.py reads.
INK = "ink"                  # float list, length * 3: (dx, dy, end_of_stroke)
SHAPE = "shape"              # int64 [length, 3]
CLASS_INDEX = "class_index"  # int64, line number in the classes file

# Metadata kept from the ndjson record (the data notebook's choice).
KEY_ID = "key_id"            # int64, when the key_id is a canonical decimal in [0, 2**63)
KEY_ID_TEXT = "key_id_text"  # bytes, the key_id exactly as given, when it is not
WORD = "word"                # bytes
COUNTRYCODE = "countrycode"  # bytes
RECOGNIZED = "recognized"    # int64, 0 or 1
TIMESTAMP = "timestamp"      # int64, seconds since the epoch (UTC)

# Optional raster (the notebook's rasterised dataset for CNNs).
IMG_64 = "img_64"            # int64 list, 64 * 64 grayscale pixels
IMG_SIZE = 64
IMG_LINE_WIDTH = 4

INK_CHANNELS = 3

TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS = (TRAIN, EVAL, TEST)

# File name prefixes of the sharded TFRecords, as in the tutorial.
SPLIT_PREFIX = {
    TRAIN: "training.tfrecord",
    EVAL: "eval.tfrecord",
    TEST: "test.tfrecord",
}
CLASSES_FILE = "training.tfrecord.classes"
STATS_FILE = "stats.json"
LENGTH_STATS_FILE = "ink_length_stats.json"
REJECTS_PREFIX = "rejects"
REJECTS_SUFFIX = ".ndjson"
TRANSFORM_DIR = "transform_output"
MANIFEST_FILE = "manifest.json"   # written last: see dataset_manifest.py

# Raw-drawing features fed to tf.Transform and taken by the serving signature.
RAW_X = "x"                  # float list: absolute x of every point
RAW_Y = "y"                  # float list: absolute y of every point
RAW_STROKE_END = "stroke_end"  # float list: 1.0 on the last point of a stroke
# Outputs of the exported transform graph.
TRANSFORMED_INK = INK
TRANSFORMED_LENGTH = "length"
LENGTH_BOUNDARIES = "length_boundaries"
# The transform graph's vocabulary of class names, with their counts.
CLASS_VOCABULARY = "class_vocabulary"


def shard_name(split: str, shard: int, num_shards: int) -> str:
    """``training.tfrecord-00003-of-00010``: the tutorial's shard naming."""
    return "%s-%05d-of-%05d" % (SPLIT_PREFIX[split], shard, num_shards)


def format_classes(names: list[str]) -> bytes:
    """The classes file's bytes: one name a line, UTF-8."""
    return "".join(name + "\n" for name in names).encode("utf-8")


def parse_classes(data: bytes | str) -> list[str]:
    """The names of a classes file; the line number is the class index.

    The one reader of the file's contents, whatever filesystem the bytes come
    from: names are stripped of surrounding whitespace (Windows line ends
    too), trailing blank lines are ignored; a blank line before the last name
    or a name twice would shift or merge indices, so both are errors
    (ValueError, with the line number).
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    names = [line.strip() for line in text.split("\n")]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError("it holds no class name")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if not name:
            raise ValueError("line %d is blank (the line number is the class index)" % number)
        if name in seen:
            raise ValueError("line %d names %r again (first on line %d)" % (number, name[:80], seen[name]))
        seen[name] = number
    return names


def shard_pattern(split: str) -> str:
    """Glob that matches every shard of a split, whatever their number."""
    return SPLIT_PREFIX[split] + "-?????-of-?????"


# ``key_id`` of a record whose key_id is stored as text (``key_id_text``).
NO_INT_KEY_ID = -1


def key_id_int(key_id: str) -> int | None:
    """The int64 form of a key_id, or None when storing it as an integer would
    change it (leading zeros, a sign, non-ASCII digits, 2**63 or more): such
    key_ids go to ``key_id_text`` exactly as given."""
    if not (key_id.isascii() and key_id.isdigit()) or (key_id[0] == "0" and len(key_id) > 1):
        return None
    value = int(key_id)
    return value if value < 1 << 63 else None


def key_id_of(int_value: int, text_value: bytes) -> str:
    """The key_id as given in the ndjson, from the two parsed features."""
    return str(int_value) if int_value != NO_INT_KEY_ID else text_value.decode("utf-8")


def feature_spec(tf, with_metadata: bool = False) -> dict:
    """The tutorial's parsing spec; ``tf`` is passed in so this module stays
    importable without TensorFlow (the Beam workers' launcher may lack it)."""
    spec = {
        INK: tf.io.VarLenFeature(dtype=tf.float32),
        SHAPE: tf.io.FixedLenFeature([2], dtype=tf.int64),
        CLASS_INDEX: tf.io.FixedLenFeature([1], dtype=tf.int64),
    }
    if with_metadata:
        spec.update({
            KEY_ID: tf.io.FixedLenFeature([1], dtype=tf.int64, default_value=[NO_INT_KEY_ID]),
            KEY_ID_TEXT: tf.io.FixedLenFeature([1], dtype=tf.string, default_value=[b""]),
            WORD: tf.io.FixedLenFeature([1], dtype=tf.string),
            COUNTRYCODE: tf.io.FixedLenFeature([1], dtype=tf.string),
            RECOGNIZED: tf.io.FixedLenFeature([1], dtype=tf.int64),
            TIMESTAMP: tf.io.FixedLenFeature([1], dtype=tf.int64),
        })
    return spec
