"""Exports for the serving tests: a tiny model (random weights; the tests check the
mechanics, not accuracy) over a pipeline dataset of real drawings, or with the
trainer's own preprocessing as for a dataset made by the tutorial's script."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

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


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``quickdraw-serve`` in a subprocess, ready once /healthz answers."""

    def __init__(self, *args: str, timeout: float = 180):
        import subprocess
        import sys
        import time
        import urllib.request
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                            os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", "--port=%d" % self.port, *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: %s" % self.process.stdout.read().decode())
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the server did not start in %d s" % timeout)
                time.sleep(0.3)

    def rss_mib(self) -> float:
        with open("/proc/%d/status" % self.process.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        import urllib.request
        return self.process.poll() is None and urllib.request.urlopen(
            self.url + "/healthz", timeout=10).status == 200

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except Exception:
            self.process.kill()
            self.process.wait()


def raw_batch(lines: list[str]) -> dict:
    """Padded absolute points of ndjson lines, as the raw signature takes them."""
    drawings = []
    for line in lines:
        xs, ys, ends = [], [], []
        for stroke in json.loads(line)["drawing"]:
            xs += stroke[0]
            ys += stroke[1]
            ends += [0.0] * (len(stroke[0]) - 1) + [1.0]
        drawings.append((xs, ys, ends))
    n = max(len(d[0]) for d in drawings)
    batch = np.zeros((3, len(drawings), n), np.float32)
    for i, d in enumerate(drawings):
        for c in range(3):
            batch[c, i, :len(d[c])] = d[c]
    return dict(x=batch[0], y=batch[1], stroke_end=batch[2],
                lengths=np.array([len(d[0]) for d in drawings], np.int32))


def expected_probabilities(model, lines: list[str]) -> np.ndarray:
    """parse_line + the Keras model, one drawing at a time (no padding)."""
    import tensorflow as tf

    from pipeline.parse import parse_line

    @tf.function(input_signature=[tf.TensorSpec([1, None, schema.INK_CHANNELS], tf.float32),
                                  tf.TensorSpec([1], tf.int32)])
    def probabilities(ink, lengths):
        return tf.nn.softmax(model({schema.INK: ink, "lengths": lengths}, training=False))

    return np.concatenate([probabilities(ink[np.newaxis], np.array([len(ink)], np.int32)).numpy()
                           for ink, _ in map(parse_line, lines)])
