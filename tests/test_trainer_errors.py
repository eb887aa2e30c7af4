"""Bad input gives one clear line (exit code 2 as a command), never a traceback."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

import tfrecord_schema as schema
from trainer import task
from trainer.data import check_records, length_boundaries, list_files
from trainer.errors import TrainerError
from trainer_helpers import REPO, TINY_MODEL, data_flags, write_tutorial_dataset

CLASSES = ["apple", "star", "key"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_tutorial_dataset(tmp_path_factory.mktemp("errors"), CLASSES,
                                  train_per_class=4, eval_per_class=2)


def flags(paths, model_dir, **override):
    merged = dict(paths, **override)
    return data_flags(merged) + TINY_MODEL + ["--model_dir=%s" % model_dir, "--steps=2",
                                              "--batch_size=4"]


def test_no_file_matches(paths, tmp_path):
    with pytest.raises(TrainerError, match="no file matches"):
        task.main(flags(paths, tmp_path, training_data=str(tmp_path / "nothing-*")))


def test_classes_file_with_fewer_classes_than_labels(paths, tmp_path):
    short = tmp_path / "classes"
    short.write_text("apple\nstar\n")
    with pytest.raises(TrainerError, match="class_index 2 but the classes file lists 2 classes"):
        task.main(flags(paths, tmp_path / "m", classes_file=str(short)))


def test_classes_file_in_another_order_than_the_words(tmp_path):
    """The pipeline's records carry the word, so a reordered classes file is caught."""
    record = tf.train.Example()
    f = record.features.feature
    f[schema.INK].float_list.value.extend([0.1, 0.2, 0.0, 0.3, 0.1, 1.0])
    f[schema.SHAPE].int64_list.value.extend([2, 3])
    f[schema.CLASS_INDEX].int64_list.value.append(0)
    f[schema.WORD].bytes_list.value.append(b"star")
    path = str(tmp_path / "training.tfrecord-00000-of-00001")
    with tf.io.TFRecordWriter(path) as w:
        w.write(record.SerializeToString())
    with pytest.raises(TrainerError, match="'star' labelled 0, which the classes file calls 'apple'"):
        check_records([path], ["apple", "star"])
    assert check_records([path], ["star", "apple"]) == 1


def test_corrupt_record_file(paths, tmp_path):
    corrupt = tmp_path / "training.tfrecord-00000-of-00001"
    good = open(list_files(paths["training_data"])[0], "rb").read()
    corrupt.write_bytes(good[:40] + b"\xff" * 16 + good[56:])
    with pytest.raises(TrainerError, match="corrupt"):
        task.main(flags(paths, tmp_path / "m", training_data=str(corrupt)))


def test_corrupt_record_past_the_checked_prefix(tmp_path):
    """Corruption the up-front check does not reach is caught while training."""
    paths = write_tutorial_dataset(tmp_path / "data", CLASSES, train_per_class=24,
                                   eval_per_class=1, shards=1)
    shard = list_files(paths["training_data"])[0]
    blob = bytearray(open(shard, "rb").read())
    blob[-30:-20] = b"\xff" * 10
    open(shard, "wb").write(bytes(blob))
    with pytest.raises(TrainerError, match="bad training data: .*corrupted"):
        task.main(flags(paths, tmp_path / "m") + ["--steps=100"])


def test_empty_dataset(paths, tmp_path):
    empty = tmp_path / "eval.tfrecord-00000-of-00001"
    empty.write_bytes(b"")
    with pytest.raises(TrainerError, match="empty dataset"):
        task.main(flags(paths, tmp_path / "m", eval_data=str(empty)))


def test_model_dir_of_another_architecture(paths, tmp_path):
    task.main(flags(paths, tmp_path / "m") + ["--eval_every_steps=0"])
    with pytest.raises(TrainerError, match="holds a run of another model"):
        task.main(flags(paths, tmp_path / "m") + ["--num_nodes=12"])


def test_length_boundaries_from_pipeline_stats(paths, tmp_path):
    assert length_boundaries(paths["training_data"])[0] == 12  # no stats: defaults
    stats = tmp_path / schema.LENGTH_STATS_FILE
    stats.write_text('{"boundaries": [10, 20, 40], "max": 70}')
    pattern = str(tmp_path / schema.shard_pattern(schema.TRAIN))
    assert length_boundaries(pattern) == [10, 20, 40, 51, 64]
    stats.write_text('{"no": "boundaries"}')
    with pytest.raises(TrainerError, match="cannot read length boundaries"):
        length_boundaries(pattern)


def test_command_prints_one_line_and_exits_2(paths, tmp_path):
    argv = flags(paths, tmp_path / "m", training_data=str(tmp_path / "nothing-*"))
    proc = subprocess.run([sys.executable, "-m", "trainer.task", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: no file matches %r" % str(
        tmp_path / "nothing-*")
