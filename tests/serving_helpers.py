"""Exports for the serving tests: a tiny model (random weights; the tests check the
mechanics, not accuracy) over a pipeline dataset of real drawings, or with the
trainer's own preprocessing as for a dataset made by the tutorial's script."""
from __future__ import annotations

import os
from pathlib import Path

import tfrecord_schema as schema

CLASSES = ["cat", "dog", "fish", "tree"]
TINY = dict(num_layers=1, num_nodes=16, num_conv=(8, 8), conv_len=(3, 3))


def pipeline_dataset(sample: Path, out: Path, classes: list[str] = CLASSES) -> Path:
    """A dataset made by the pipeline (with transform_output/ and a test split)."""
    from pipeline import run as run_lib
    run_lib.run(["--input=%s" % sample, "--output=%s" % out, "--classes=%s" % ",".join(classes),
                 "--train_observations_per_class=15", "--eval_observations_per_class=5",
                 "--test_observations_per_class=5", "--output_shards=1"])
    return out


def tiny_export(export_dir: Path, classes: list[str] = CLASSES,
                transform_output: str | None = None, top_k: int = 3):
    """Exports a freshly initialised tiny classifier; returns (export dir, Keras model)."""
    from trainer.export import export_model
    from trainer.model import ModelConfig, build_model
    import keras
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(num_classes=len(classes), **TINY))
    export_model(model, classes, str(export_dir), global_step=7, top_k=top_k,
                 transform_output=transform_output)
    return export_dir, model


def dataset_classes(dataset: Path) -> list[str]:
    return (dataset / schema.CLASSES_FILE).read_text().split()


def transform_dir(dataset: Path) -> str:
    return os.path.join(str(dataset), schema.TRANSFORM_DIR)
