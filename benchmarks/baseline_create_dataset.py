"""The RNN tutorial's ``create_dataset.py``, ported to TensorFlow 2: the baseline
the pipeline benchmark measures against.

One process, one line at a time: every class file stays open, a shuffled
reading order says which class the next line comes from, and each drawing goes
``json.loads`` -> ``parse_line`` -> ``tf.train.Example`` -> a random one of the
shards. Training lines come first in every file, then the eval lines (skipped
over with the tutorial's ``offset``), then, beyond the tutorial, the test lines,
so it writes the same splits as the pipeline.

The port keeps the tutorial's work per drawing and changes only what TF2 or
speed asks: ``tf.io`` instead of ``tf.python_io``, Python's own file reading
instead of ``tf.gfile.GFile`` (faster on local disk), a dict for the class
index instead of ``list.index``, and a seed so runs are repeatable.
"""
from __future__ import annotations

import os
import random

import tfrecord_schema as schema
from pipeline.parse import parse_line


def convert_data(tf, ndjson_dir: str, observations_per_class: int,
                 output_file: str, classnames: list[str], output_shards: int = 10,
                 offset: int = 0, seed: int = 0) -> list[str]:
    """Writes ``observations_per_class`` drawings of every ``*.ndjson`` file in
    ``ndjson_dir``, after skipping ``offset`` lines of each, to
    ``output_file-0000i-of-0000n``; returns the class names in index order."""
    rng = random.Random(seed)
    names = sorted(n for n in os.listdir(ndjson_dir) if n.endswith(".ndjson"))
    files = [open(os.path.join(ndjson_dir, n)) for n in names]
    for f in files:
        for _ in range(offset):
            f.readline()
    writers = [tf.io.TFRecordWriter("%s-%05i-of-%05i" % (output_file, i, output_shards))
               for i in range(output_shards)]
    class_index = {name: i for i, name in enumerate(classnames)}

    reading_order = list(range(len(files))) * observations_per_class
    rng.shuffle(reading_order)
    for c in reading_order:
        ink, class_name = parse_line(files[c].readline())
        if class_name not in class_index:
            class_index[class_name] = len(classnames)
            classnames.append(class_name)
        features = {
            schema.CLASS_INDEX: tf.train.Feature(int64_list=tf.train.Int64List(
                value=[class_index[class_name]])),
            schema.INK: tf.train.Feature(float_list=tf.train.FloatList(
                value=ink.flatten())),
            schema.SHAPE: tf.train.Feature(int64_list=tf.train.Int64List(
                value=ink.shape)),
        }
        example = tf.train.Example(features=tf.train.Features(feature=features))
        writers[rng.randint(0, output_shards - 1)].write(example.SerializeToString())

    for writer in writers:
        writer.close()
    for f in files:
        f.close()
    with open(output_file + ".classes", "w") as f:
        for class_name in classnames:
            f.write(class_name + "\n")
    return classnames


def create_dataset(tf, ndjson_dir: str, output_dir: str, train: int, eval_: int,
                   test: int, output_shards: int = 10) -> int:
    """The tutorial's ``main``, with a test split after eval; returns the number
    of drawings written."""
    os.makedirs(output_dir, exist_ok=True)
    classnames: list[str] = []
    offset = 0
    for split, count in ((schema.TRAIN, train), (schema.EVAL, eval_),
                         (schema.TEST, test)):
        convert_data(tf, ndjson_dir, count,
                     os.path.join(output_dir, schema.SPLIT_PREFIX[split]),
                     classnames, output_shards, offset)
        offset += count
    return len(classnames) * (train + eval_ + test)
