"""Test data for the trainer: TFRecords written the way the tutorial's
create_dataset.py writes them (ink, shape, class_index only), from real
Quick, Draw! drawings."""
from __future__ import annotations

import os
import random
from pathlib import Path

import tensorflow as tf

import tfrecord_schema as schema
from pipeline.parse import parse_line

from sample_paths import BUNDLED_SAMPLE, REPO, REAL_SAMPLE

# Tiny model for tests of the mechanics: seconds per hundred steps on a CPU.
TINY_MODEL = ["--num_layers=1", "--num_nodes=16", "--num_conv=8,8", "--conv_len=3,3"]


def tutorial_example(ink, class_index: int) -> tf.train.Example:
    """create_dataset.py's record: flattened ink, its shape and the class index."""
    example = tf.train.Example()
    example.features.feature[schema.INK].float_list.value.extend(ink.flatten())
    example.features.feature[schema.SHAPE].int64_list.value.extend(ink.shape)
    example.features.feature[schema.CLASS_INDEX].int64_list.value.append(class_index)
    return example


def read_drawings(sample_dir: Path, classes: list[str]) -> dict[str, list[str]]:
    """The ndjson lines of each class, in file order."""
    return {c: (sample_dir / ("%s.ndjson" % c)).read_text().splitlines() for c in classes}


def write_tutorial_dataset(out_dir: str | os.PathLike, classes: list[str],
                           sample_dir: Path = BUNDLED_SAMPLE, train_per_class: int = 20,
                           eval_per_class: int = 5, shards: int = 2, seed: int = 0) -> dict:
    """Writes training/eval shards and the classes file; returns their patterns."""
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    drawings = read_drawings(sample_dir, classes)
    splits = {schema.TRAIN: [], schema.EVAL: []}
    for index, name in enumerate(classes):
        lines = drawings[name]
        splits[schema.TRAIN] += [(line, index) for line in lines[:train_per_class]]
        splits[schema.EVAL] += [(line, index) for line in
                                lines[train_per_class:train_per_class + eval_per_class]]
    for split, items in splits.items():
        rng.shuffle(items)
        writers = [tf.io.TFRecordWriter(os.path.join(out_dir, schema.shard_name(split, i, shards)))
                   for i in range(shards)]
        for n, (line, index) in enumerate(items):
            ink, _ = parse_line(line)
            writers[n % shards].write(tutorial_example(ink, index).SerializeToString())
        for w in writers:
            w.close()
    classes_file = os.path.join(out_dir, schema.CLASSES_FILE)
    with open(classes_file, "w") as f:
        f.write("\n".join(classes) + "\n")
    return {
        "training_data": os.path.join(out_dir, schema.shard_pattern(schema.TRAIN)),
        "eval_data": os.path.join(out_dir, schema.shard_pattern(schema.EVAL)),
        "classes_file": classes_file,
    }


def data_flags(paths: dict) -> list[str]:
    return ["--%s=%s" % (k, v) for k, v in paths.items()]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def trainer_command(*argv: str) -> list[str]:
    import sys
    return [sys.executable, "-m", "trainer.task", *argv]


def quiet_env(**extra: str) -> dict:
    """The environment for trainer subprocesses: CPU only, little TF logging."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env
