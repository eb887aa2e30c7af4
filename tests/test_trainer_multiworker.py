"""Two workers on localhost train together through TF_CONFIG, as on Vertex AI."""
import json
import subprocess

from trainer_helpers import REPO, TINY_MODEL, data_flags, free_port, quiet_env, \
    trainer_command, write_tutorial_dataset

STEPS = 6


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
        assert "Training with distribution multi_worker: 2 replica(s) in sync" in output
        assert "train step %d/%d" % (STEPS, STEPS) in output
    report = json.loads((model_dir / "eval_report.json").read_text())
    assert report["global_step"] == STEPS and report["num_examples"] == 6
    assert (model_dir / "export" / "saved_model.pb").exists()
    assert not (model_dir / "worker_tmp" / "1").exists()
    assert "Exported" in outputs[0] and "Exported" not in outputs[1]
