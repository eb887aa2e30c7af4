"""Retraining end to end on the bundled sample: the DirectRunner pipeline, a
tiny model, the promotion gate, and a run killed in the middle.

The three runs share one registry and build on each other (module fixture).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import tfrecord_schema as schema
from deploy import retrain
from deploy.registry import Registry
from deploy_helpers import REPO, SAMPLE

pytestmark = pytest.mark.slow

CLASSES = ["apple", "ladder", "moon", "star"]
PIPELINE_FLAGS = " ".join([
    "--input=%s" % (SAMPLE / "*.ndjson"),
    "--classes=%s" % ",".join(CLASSES),
    "--train_observations_per_class=15",
    "--eval_observations_per_class=5",
    "--test_observations_per_class=5",
    "--output_shards=2",
    "--seed=7",
    "--runner=DirectRunner",
])
TINY = ("--num_layers=1 --num_nodes=16 --num_conv=16,16 --conv_len=3,3 "
        "--batch_size=16 --learning_rate=0.01 --eval_every_steps=0 --seed=1 "
        "--log_every_steps=50")


def retrain_args(registry: str, *extra: str, steps: int) -> list[str]:
    return ["--registry=" + registry, "--pipeline_flags=" + PIPELINE_FLAGS,
            "--trainer_flags=%s --steps=%d" % (TINY, steps), *extra]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("registry"))
    code = retrain.main(retrain_args(root, "--version=v1", steps=150))
    return root, code


def test_first_run_promotes(first_run):
    root, code = first_run
    assert code == retrain.EXIT_OK
    registry = Registry(root)
    pointer = registry.current()
    assert pointer["version"] == "v1"
    assert os.path.isdir(pointer["export_dir"])
    run = registry.read_run("v1")
    assert [run["steps"][s]["status"] for s in retrain.STEPS] == ["done"] * 4
    assert run["steps"]["train"]["classes"] == CLASSES
    assert run["steps"]["train"]["warm_start_from"] is None
    report = registry.read_eval_report("v1")
    assert report["decision"]["promoted"] is True
    assert report["current"] is None
    assert report["candidate"]["accuracy"] > 0.5, report["candidate"]
    fixed = registry.fixed_eval()
    assert fixed["eval_data"] == os.path.join(
        registry.dataset_dir("v1"), schema.shard_pattern(schema.EVAL))
    stats = run["steps"]["pipeline"]["stats"]
    assert stats, "the pipeline's stats are recorded"
    assert retrain.main(["--registry=" + root, "--step=promote",
                         "--version=v1"]) == retrain.EXIT_OK, "already done"
    assert retrain.main(["--registry=" + root, "--step=train",
                         "--version=v1"]) == retrain.EXIT_FAILED, \
        "a promoted version is never retrained"
    assert os.path.isdir(pointer["export_dir"])
    assert registry.current() == pointer


def test_worse_run_in_separate_steps_is_refused(first_run, capsys):
    root, _ = first_run
    registry = Registry(root)
    before = open(registry.current_path, "rb").read()
    base = retrain_args(root, "--warm_start=never", steps=1)

    assert retrain.main(base + ["--step=pipeline"]) == retrain.EXIT_OK
    version = capsys.readouterr().out.strip().splitlines()[-1]
    assert registry.read_run(version)["steps"]["pipeline"]["status"] == "done"
    for step in ("train", "evaluate"):
        assert retrain.main(base + ["--step=" + step, "--version=" + version]) \
            == retrain.EXIT_OK
    code = retrain.main(base + ["--step=promote", "--version=" + version])
    err = capsys.readouterr().err
    assert code == retrain.EXIT_REFUSED
    assert "refused" in err and "< current v1" in err

    assert open(registry.current_path, "rb").read() == before
    report = registry.read_eval_report(version)
    assert report["current_version"] == "v1"
    assert report["eval_set"]["eval_data"] == registry.fixed_eval()["eval_data"]
    assert report["candidate"]["global_step"] == 1
    assert report["candidate"]["accuracy"] < report["current"]["accuracy"] - 0.02
    assert report["decision"]["promoted"] is False
    assert version in registry.versions(), "refused versions are kept"


def test_run_killed_in_the_middle_leaves_current(first_run, tmp_path):
    root, _ = first_run
    registry = Registry(root)
    before = open(registry.current_path, "rb").read()
    # A dataset written by a pipeline launched elsewhere (as the Flex
    # Template does), which the train step adopts.
    shutil.copytree(registry.dataset_dir("v1"), registry.dataset_dir("v3"))
    args = retrain_args(root, "--step=train", "--version=v3", steps=100000)
    args[2] += " --checkpoint_every_steps=20"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = tmp_path / "retrain.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "deploy.retrain", *args],
                                cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    checkpoint = os.path.join(registry.train_dir("v3"), "checkpoint")
    deadline = time.time() + 240
    try:
        while not os.path.exists(checkpoint):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    output = log.read_text()
    assert proc.returncode == -signal.SIGKILL
    assert "Warm-started from %s" % registry.export_dir("v1") in output

    assert open(registry.current_path, "rb").read() == before
    run = registry.read_run("v3")
    assert run["steps"]["pipeline"]["status"] == "done"
    assert run["steps"]["train"]["status"] == "running"
    assert run["steps"]["train"]["warm_start_from"] == registry.export_dir("v1")
    assert not os.path.exists(registry.export_dir("v3"))
    assert registry.read_eval_report("v3") is None

    code = retrain.main(["--registry=" + root, "--step=promote", "--version=v3"])
    assert code == retrain.EXIT_FAILED
    code = retrain.main(["--registry=" + root, "--step=evaluate", "--version=v3"])
    assert code == retrain.EXIT_FAILED
    assert registry.current_version() == "v1"
    assert json.loads(before)["version"] == "v1"


def test_a_pipeline_step_retried_on_another_machine_takes_over_its_lock(first_run, capsys):
    """A pod evicted while its pipeline ran leaves the step recorded as
    running and the dataset folder locked by a host that cannot be asked. A
    scheduler's retry of that version, anywhere, takes over both, as it does
    the step (one task per version at a time), and says so."""
    import dataset_manifest
    from deploy import registry_records

    root, _ = first_run
    registry = Registry(root)
    version = "v9"
    registry.new_version(version)
    gone = dict(registry_records.owner(), host="evicted-pod", pid=4321)

    def running_elsewhere(run):
        run["steps"]["pipeline"] = {"status": "running", "started_at": registry_records.utc_now(),
                                    "updated_at": registry_records.utc_now(), "pid": 4321, "owner": gone}
    registry.update_run(version, running_elsewhere)
    os.makedirs(registry.dataset_dir(version))
    with open(os.path.join(registry.dataset_dir(version), dataset_manifest.LOCK_FILE), "w") as f:
        json.dump({"host": "evicted-pod", "pid": 4321, "time": time.time() - 60, "token": "0" * 32}, f)
    code = retrain.main(retrain_args(root, "--step=pipeline", "--version=" + version, steps=1))
    err = capsys.readouterr().err
    assert code == retrain.EXIT_OK, err[-2000:]
    assert registry.read_run(version)["steps"]["pipeline"]["status"] == "done"
    assert "evicted-pod" in err
    assert dataset_manifest.verify(registry.dataset_dir(version))
    assert not os.path.exists(os.path.join(registry.dataset_dir(version), dataset_manifest.LOCK_FILE))
