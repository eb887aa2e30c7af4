"""A training job killed at any point resumes from its last checkpoint."""
import signal
import subprocess
import time

import pytest
import tensorflow as tf

from trainer_helpers import REPO, TINY_MODEL, data_flags, quiet_env, trainer_command, \
    write_tutorial_dataset

STEPS = 400


def checkpoint_step(model_dir) -> int:
    latest = tf.train.latest_checkpoint(str(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def optimizer_iterations(model_dir) -> int:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
    return int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.slow
def test_killed_run_resumes_with_step_and_optimizer_state(tmp_path):
    paths = write_tutorial_dataset(tmp_path / "data", ["cloud", "eye", "fish"],
                                   train_per_class=10, eval_per_class=3)
    model_dir = tmp_path / "model"
    command = trainer_command(*data_flags(paths), *TINY_MODEL, "--model_dir=%s" % model_dir,
                              "--steps=%d" % STEPS, "--batch_size=4", "--seed=0",
                              "--checkpoint_every_steps=20", "--log_every_steps=20",
                              "--eval_every_steps=0")
    first = subprocess.Popen(command, cwd=REPO, env=quiet_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while checkpoint_step(model_dir) < 40 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    output = first.communicate()[0]
    assert first.returncode == -signal.SIGKILL, output
    killed_at = checkpoint_step(model_dir)
    assert 40 <= killed_at < STEPS, "the run should be killed mid-way"
    assert optimizer_iterations(model_dir) == killed_at

    second = subprocess.run(command, cwd=REPO, env=quiet_env(), capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    resumed = [line for line in second.stdout.splitlines() if line.startswith("Resuming")]
    assert resumed == ["Resuming from %s at step %d"
                       % (model_dir / ("ckpt-%d" % killed_at), killed_at)]
    logged = [int(line.split()[2].split("/")[0]) for line in second.stdout.splitlines()
              if line.startswith("train step")]
    assert logged[0] > killed_at and logged[-1] == STEPS
    assert checkpoint_step(model_dir) == STEPS
    assert optimizer_iterations(model_dir) == STEPS
