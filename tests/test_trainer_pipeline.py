"""The trainer reads what the pipeline writes: metadata features, the classes
file, and the length statistics that set the bucket boundaries."""
import json

import pytest

import tfrecord_schema as schema
from pipeline import run as pipeline_run
from trainer import task
from trainer.data import extend_tail, length_boundaries
from trainer.evaluate import evaluate_saved_model
from trainer_helpers import BUNDLED_SAMPLE, TINY_MODEL

CLASSES = ["moon", "star", "ladder", "umbrella", "clock"]


@pytest.mark.slow
def test_trains_on_pipeline_output(tmp_path):
    out = tmp_path / "dataset"
    pipeline_run.run(["--input=%s" % BUNDLED_SAMPLE, "--output=%s" % out,
                      "--classes=%s" % ",".join(CLASSES), "--train_observations_per_class=18",
                      "--eval_observations_per_class=5", "--output_shards=2"])
    training = str(out / schema.shard_pattern(schema.TRAIN))
    stats = json.loads((out / schema.LENGTH_STATS_FILE).read_text())
    assert length_boundaries(training) == extend_tail(stats["boundaries"], stats["max"])

    model_dir = tmp_path / "model"
    metrics = task.main([
        "--training_data=%s" % training,
        "--eval_data=%s" % (out / schema.shard_pattern(schema.EVAL)),
        "--classes_file=%s" % (out / schema.CLASSES_FILE), "--model_dir=%s" % model_dir,
        *TINY_MODEL, "--steps=40", "--batch_size=8", "--seed=0", "--eval_every_steps=0"])
    classes = (out / schema.CLASSES_FILE).read_text().split()
    assert sorted(classes) == sorted(CLASSES)
    assert metrics["global_step"] == 40 and metrics["num_examples"] == 25
    assert set(metrics["per_class"]) == set(CLASSES)
    exported = evaluate_saved_model(str(model_dir / "export"),
                                    str(out / schema.shard_pattern(schema.EVAL)),
                                    str(out / schema.CLASSES_FILE))
    assert exported["accuracy"] == metrics["accuracy"]
