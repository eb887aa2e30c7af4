"""Bad input gives one clear line (exit code 2 as a command), never a traceback."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfrecord_schema as schema
from trainer import task
from trainer.data import check_records, length_boundaries, list_files
from trainer.errors import TrainerError
from trainer_helpers import REPO, TINY_MODEL, data_flags, tutorial_example, \
    write_tutorial_dataset

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
    with pytest.raises(TrainerError, match=r"class_index 2\b.*\b2 classes"):
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
    with pytest.raises(TrainerError, match=r"'star'.*\b0\b.*'apple'"):
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


@pytest.mark.slow
def test_model_dir_of_another_architecture(paths, tmp_path):
    task.main(flags(paths, tmp_path / "m") + ["--eval_every_steps=0"])
    with pytest.raises(TrainerError, match=re.escape(str(tmp_path / "m")) + r".*'num_nodes': 16\b.*--model_dir"):
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


@pytest.mark.slow
def test_command_prints_one_line_and_exits_2(paths, tmp_path):
    argv = flags(paths, tmp_path / "m", training_data=str(tmp_path / "nothing-*"))
    proc = subprocess.run([sys.executable, "-m", "trainer.task", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    # One line: TensorFlow's lines that only say there is no GPU are filtered.
    assert proc.stderr.strip().splitlines() == ["error: no file matches %r" % str(tmp_path / "nothing-*")]


def example(length: int, class_index: int, word: str | None = None, shape=None,
            value: float = 0.1):
    ink = np.full((length, 3), value, np.float32)
    record = tutorial_example(ink, class_index)
    if shape is not None:
        del record.features.feature[schema.SHAPE].int64_list.value[:]
        record.features.feature[schema.SHAPE].int64_list.value.extend(shape)
    if word is not None:
        record.features.feature[schema.WORD].bytes_list.value.append(word.encode())
    return record


def write_records(path, records) -> str:
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r.SerializeToString())
    return str(path)


def good(n: int, words: bool = False):
    return [example(3 + i % 5, i % 3, CLASSES[i % 3] if words else None) for i in range(n)]


def test_bad_eval_record_past_the_sample_fails_before_step_0(paths, tmp_path):
    bad_eval = write_records(tmp_path / "eval.tfrecord-00000-of-00001",
                             good(70) + [example(4, 99)])
    model_dir = tmp_path / "m"
    with pytest.raises(TrainerError) as error:
        task.main(flags(paths, model_dir, eval_data=bad_eval) + ["--steps=50"])
    assert str(error.value) == ("bad eval data: a record in %s has class_index 99 but the "
                                "classes file lists 3 classes: the classes file does not "
                                "match the labels" % bad_eval)
    assert tf.train.latest_checkpoint(str(model_dir)) is None


@pytest.mark.parametrize("bad, message", [
    (example(4, 1, shape=[5, 3]), "has ink whose size does not match its shape"),
    (example(4, 0, word="star"), "is a 'star' labelled 0, which the classes file calls "
                                 "'apple': the classes file does not match the labels"),
    (example(4, 1, value=np.nan), "has non-finite ink values (NaN or infinity)"),
])
def test_bad_training_record_past_the_sample_names_its_file(paths, tmp_path, bad, message):
    shard = write_records(tmp_path / "training.tfrecord-00000-of-00001",
                          good(70, words=True) + [bad])
    with pytest.raises(TrainerError) as error:
        task.main(flags(paths, tmp_path / "m", training_data=shard) + ["--steps=50"])
    assert str(error.value) == "bad training data: a record in %s %s" % (shard, message)


def test_up_front_check_reads_ink_size_and_values(tmp_path):
    mismatched = write_records(tmp_path / "a", [example(4, 1, shape=[5, 3])])
    with pytest.raises(TrainerError, match=r"\b12 ink values\b.*\[5, 3\]"):
        check_records([mismatched], CLASSES)
    nan = write_records(tmp_path / "b", [example(4, 1, value=np.inf)])
    with pytest.raises(TrainerError, match=r"b\b.*non-finite ink"):
        check_records([nan], CLASSES)


@pytest.mark.slow
def test_zero_length_examples_are_counted_and_reported(paths, tmp_path):
    train = write_records(tmp_path / "training.tfrecord-00000-of-00001",
                          good(12) + [example(0, 1)])
    evals = write_records(tmp_path / "eval.tfrecord-00000-of-00001",
                          good(5) + [example(0, 1), example(0, 2)])
    model_dir = tmp_path / "m"
    metrics = task.main(flags(paths, model_dir, training_data=train, eval_data=evals)
                        + ["--eval_every_steps=0"])
    assert metrics["num_examples"] == 5
    assert metrics["dropped_examples"]["eval"] == 2
    assert metrics["dropped_examples"]["training"] >= 1
    report = json.loads((model_dir / "eval_report.json").read_text())
    assert report["dropped_examples"] == metrics["dropped_examples"]


def test_tampered_pipeline_dataset_is_refused_in_one_line(tmp_path):
    import dataset_manifest
    folder = tmp_path / "data"
    paths = write_tutorial_dataset(folder, CLASSES, train_per_class=4, eval_per_class=2)
    dataset_manifest.write_manifest(str(folder), {"counts": {"train": 12, "eval": 6}})
    shard = list_files(paths["training_data"])[0]
    blob = bytearray(open(shard, "rb").read())
    blob[-5] ^= 0xFF  # same size, other content
    open(shard, "wb").write(bytes(blob))
    with pytest.raises(TrainerError) as error:
        task.main(flags(paths, tmp_path / "m"))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("dataset refused: %s: %s has CRC-32C" % (folder, os.path.basename(shard)))
    assert not (tmp_path / "m").exists()
    open(shard, "ab").write(b"x")
    with pytest.raises(TrainerError, match=r"^dataset refused: .*\b%d\b.*manifest\.json.*\b%d\b"
                                           % (len(blob) + 1, len(blob))):
        task.main(flags(paths, tmp_path / "m") + ["--no_dataset_checksums"])


@pytest.mark.parametrize("make, kind", [
    (os.mkfifo, "a FIFO"),                                      # TensorFlow's reader would wait forever
    (lambda p: os.symlink("/dev/zero", p), "a character device"),  # and never finish this one
    (os.mkdir, "a directory"),
    (lambda p: os.symlink("/nowhere/at/all", p), "No such file or directory")])
def test_a_shard_that_is_not_a_regular_file_is_refused_before_any_read(tmp_path, make, kind):
    paths = write_tutorial_dataset(tmp_path, CLASSES, train_per_class=2, eval_per_class=1)
    odd = tmp_path / schema.shard_name(schema.TRAIN, 7, 9)
    make(str(odd))
    with pytest.raises(TrainerError) as raised:
        list_files(paths["training_data"])
    assert str(odd) in str(raised.value) and kind in str(raised.value)


@pytest.mark.slow
def test_a_fifo_among_the_shards_is_one_line_not_a_hang(tmp_path):
    paths = write_tutorial_dataset(tmp_path / "data", CLASSES, train_per_class=2, eval_per_class=1)
    fifo = tmp_path / "data" / schema.shard_name(schema.TRAIN, 7, 9)
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "trainer.task", *flags(paths, tmp_path / "m")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: %s is a FIFO, not a regular file" % fifo]


@pytest.mark.parametrize("which", ["classes_file", schema.LENGTH_STATS_FILE])
def test_a_classes_or_stats_file_that_is_a_fifo_is_one_error_not_a_hang(tmp_path, which):
    paths = write_tutorial_dataset(tmp_path, CLASSES, train_per_class=2, eval_per_class=1)
    from trainer.data import read_classes
    if which == "classes_file":
        os.unlink(paths["classes_file"])
        os.mkfifo(paths["classes_file"])
        with pytest.raises(TrainerError, match="a FIFO"):
            read_classes(paths["classes_file"])
    else:
        os.mkfifo(tmp_path / which)
        with pytest.raises(TrainerError, match="a FIFO"):
            length_boundaries(paths["training_data"])


@pytest.mark.parametrize("folder", ["run [1]", "data, 2017", "a*b?"])
def test_a_dataset_in_a_folder_named_with_wildcards_or_a_comma_is_found(tmp_path, folder):
    paths = write_tutorial_dataset(tmp_path / folder, CLASSES, train_per_class=2, eval_per_class=1)
    assert [os.path.basename(f) for f in list_files(paths["training_data"])] == [
        schema.shard_name(schema.TRAIN, i, 2) for i in range(2)]


def lock_of(owner: dict) -> bytes:
    return json.dumps(dict({"time": 1.0, "token": "0" * 32}, **owner)).encode()


def test_a_model_dir_another_run_trains_into_is_refused(paths, tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "trainer.lock").write_bytes(lock_of({"host": "elsewhere", "pid": 7}))
    with pytest.raises(TrainerError) as refused:
        task.main(flags(paths, model_dir))
    assert "another run is training into" in str(refused.value) and "elsewhere" in str(refused.value)
    assert str(model_dir / "trainer.lock") in str(refused.value)
    assert not list(model_dir.glob("ckpt-*")), "nothing was trained"


@pytest.mark.slow
def test_the_lock_of_a_dead_run_is_taken_over_and_a_run_leaves_none(paths, tmp_path, caplog):
    import socket
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "trainer.lock").write_bytes(lock_of({"host": socket.gethostname(), "pid": int(gone)}))
    task.main(flags(paths, model_dir))
    assert "a run that is gone" in caplog.text
    assert not (model_dir / "trainer.lock").exists()
    (model_dir / "trainer.lock").write_bytes(lock_of({"host": "evicted-pod", "pid": 7}))
    task.main(flags(paths, model_dir) + ["--steps=3"], take_over_lock=True)  # retrain's retry
    assert "an earlier attempt" in caplog.text
    assert not (model_dir / "trainer.lock").exists()
