"""Distribution: two workers on localhost through TF_CONFIG (as Vertex AI sets
it), and one machine mirroring over two devices."""
import json
import re
import subprocess
import sys

import pytest

from trainer_helpers import REPO, TINY_MODEL, data_flags, free_port, quiet_env, \
    trainer_command, write_tutorial_dataset

STEPS = 6


@pytest.mark.slow
def test_two_workers_through_tf_config(tmp_path):
    paths = write_tutorial_dataset(tmp_path / "data", ["house", "guitar", "star"],
                                   train_per_class=8, eval_per_class=2, shards=4)
    model_dir = tmp_path / "model"
    workers = ["localhost:%d" % free_port(), "localhost:%d" % free_port()]
    command = trainer_command(*data_flags(paths), *TINY_MODEL, "--model_dir=%s" % model_dir,
                              "--steps=%d" % STEPS, "--batch_size=8", "--seed=0",
                              "--checkpoint_every_steps=3", "--log_every_steps=3",
                              "--eval_every_steps=0")
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(command, cwd=REPO, env=quiet_env(TF_CONFIG=json.dumps(tf_config)),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
        assert re.search(r"multi_worker\b.*\b2 replica", output), output
        assert "train step %d/%d" % (STEPS, STEPS) in output
    report = json.loads((model_dir / "eval_report.json").read_text())
    assert report["global_step"] == STEPS and report["num_examples"] == 6
    assert (model_dir / "export" / "saved_model.pb").exists()
    assert not (model_dir / "worker_tmp" / "1").exists()
    assert "Exported" in outputs[0] and "Exported" not in outputs[1]


MIRRORED_SCRIPT = """
import functools, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
# No GPU here: mirror over two logical CPUs, as MirroredStrategy would over two GPUs.
tf.distribute.MirroredStrategy = functools.partial(tf.distribute.MirroredStrategy,
                                                   devices=["/cpu:0", "/cpu:1"])
from trainer import task
print("METRICS " + json.dumps(task.main(sys.argv[1:])))
"""


@pytest.mark.slow
def test_mirrored_over_two_devices(tmp_path):
    paths = write_tutorial_dataset(tmp_path / "data", ["house", "guitar", "star"],
                                   train_per_class=8, eval_per_class=2)
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, *data_flags(paths), *TINY_MODEL,
         "--model_dir=%s" % (tmp_path / "model"), "--steps=%d" % STEPS, "--batch_size=8",
         "--distribution=mirrored", "--eval_every_steps=0", "--log_every_steps=3"],
        cwd=REPO, env=quiet_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"mirrored\b.*\b2 replica", proc.stdout), proc.stdout
    metrics = json.loads(proc.stdout.split("METRICS ", 1)[1])
    assert metrics["global_step"] == STEPS and metrics["num_examples"] == 6


STEP_EQUALITY_SCRIPT = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from trainer.model import ModelConfig, build_model
from trainer.train_step import make_optimizer, make_train_step

CONFIG = ModelConfig(num_classes=3, num_layers=1, num_nodes=8, num_conv=(6,), conv_len=(3,),
                     dropout=0.0)
rng = np.random.default_rng(0)
BATCHES = []
for _ in range(3):
    ink = rng.normal(size=(4, 9, 3)).astype(np.float32)
    ink[2:] *= 40.0  # the second replica's half has much larger gradients
    BATCHES.append(({"ink": ink, "lengths": np.array([9, 5, 7, 3], np.int32)},
                    rng.integers(0, 3, 4).astype(np.int32)))


def run(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(CONFIG)
        optimizer = make_optimizer(0.01, False)
        optimizer.build(model.trainable_variables)
    step = make_train_step(strategy, model, optimizer, clip_norm=0.05)
    n = strategy.num_replicas_in_sync
    norms = []
    for features, labels in BATCHES:
        def part(context, i=None):
            k = context.replica_id_in_sync_group
            half = slice(k * 4 // n, (k + 1) * 4 // n)
            return ({key: v[half] for key, v in features.items()}, labels[half])
        inputs = strategy.experimental_distribute_values_from_function(part) if n > 1 \\
            else (features, labels)
        norms.append(float(step(inputs)[1]))
    return [w.numpy() for w in model.weights], norms, int(optimizer.iterations.numpy())


one, one_norms, one_steps = run(tf.distribute.get_strategy())
two, two_norms, two_steps = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print("RESULT " + json.dumps({
    "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
    "norms": [one_norms, two_norms], "steps": [one_steps, two_steps]}))
"""


@pytest.mark.slow
def test_two_replica_step_equals_one_replica_step_with_clipping(tmp_path):
    """Clipping applies to the summed gradient: N replicas step as one device does."""
    proc = subprocess.run([sys.executable, "-c", STEP_EQUALITY_SCRIPT], cwd=REPO,
                          env=quiet_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    one_norms, two_norms = result["norms"]
    assert min(one_norms) > 0.05 * 10, "clipping must be active for the test to mean anything"
    assert two_norms == pytest.approx(one_norms, rel=1e-5)
    assert result["steps"] == [3, 3]
    assert result["max_weight_difference"] < 1e-5
