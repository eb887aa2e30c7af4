"""Killed runs and two runs into one folder: the folder is a complete dataset
of exactly one run, or verify refuses it."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dataset_manifest as dm
import tfrecord_schema as schema
from pipeline_helpers import real_files

ROOT = Path(__file__).resolve().parent.parent
KILLER = Path(__file__).resolve().parent / "run_and_kill.py"
SMALL = ["--train_observations_per_class=10", "--eval_observations_per_class=5"]
# Different runs: other seeds, shard counts, splits and transform choice.
# "first" (with tf.Transform) is the earlier run a folder holds.
RUNS = {
    "first": SMALL + ["--seed=1", "--output_shards=3"],
    "second": SMALL + ["--seed=2", "--output_shards=2", "--skip_transform"],
    "third": SMALL + ["--seed=3", "--output_shards=1", "--test_observations_per_class=2",
                      "--skip_transform"],
}


def _pipeline(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(KILLER), kill_at] if kill_at else [sys.executable, "-m", "pipeline.run"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(command + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def inputs(real_sample, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    for f in real_files(real_sample, 6):
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory) -> dict:
    """Each run made once into a fresh folder: what a correct folder holds."""
    out = {}
    for name, flags in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        done = _pipeline(["--input=%s" % inputs, "--output=%s" % folder] + flags)
        assert done.returncode == 0, done.stderr
        out[name] = (folder, dm.digest(str(folder)))
    return out


@pytest.mark.slow
def test_killed_runs_are_refused_and_a_rerun_equals_a_clean_run(inputs, references, tmp_path):
    folder = tmp_path / "ds"
    shutil.copytree(references["first"][0], folder)
    plan = [("reading", "second"), ("shards", "third"), ("manifest", "second")]
    for point, name in plan:
        flags = ["--input=%s" % inputs, "--output=%s" % folder] + RUNS[name]
        killed = _pipeline(flags, kill_at=point)
        assert killed.returncode == -9, (point, killed.stderr[-2000:])
        with pytest.raises(dm.ManifestError) as refused:
            dm.verify(str(folder))
        assert "\n" not in str(refused.value)
        assert (folder / dm.LOCK_FILE).exists()
        again = _pipeline(flags)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "Took over" in again.stderr
        assert dm.verify(str(folder))
        assert dm.digest(str(folder)) == references[name][1], point
        assert not (folder / dm.LOCK_FILE).exists()


def _race_child(barrier, argv: list[str]) -> None:
    from pipeline import run
    barrier.wait()
    sys.exit(run.main(argv))


@pytest.mark.slow
def test_two_runs_at_once_give_one_runs_dataset_or_a_refusal(inputs, references, tmp_path):
    trials = int(os.environ.get("QUICKDRAW_RACE_TRIALS", "4"))
    context = multiprocessing.get_context("spawn")
    refusals = 0
    for trial in range(trials):
        folder = tmp_path / ("race%d" % trial)
        if trial % 2:
            shutil.copytree(references["first"][0], folder)
        barrier = context.Barrier(2)
        runs = {name: context.Process(target=_race_child, args=(
            barrier, ["--input=%s" % inputs, "--output=%s" % folder] + flags))
            for name, flags in (("second", RUNS["second"]), ("third", RUNS["third"]))}
        for p in runs.values():
            p.start()
        for p in runs.values():
            p.join(600)
        codes = {name: p.exitcode for name, p in runs.items()}
        assert sorted(codes.values()) in ([0, 0], [0, 2]), codes
        refusals += sorted(codes.values()) == [0, 2]
        dm.verify(str(folder))
        winners = [name for name, code in codes.items() if code == 0]
        digest = dm.digest(str(folder))
        assert digest in [references[w][1] for w in winners], (trial, codes)
        seeds = {dm.verify(str(folder))["seed"]}
        assert len(seeds) == 1
    print("two runs at once: %d trials, %d with one refusal, %d with both done one after the other"
          % (trials, refusals, trials - refusals))
    assert refusals, "no trial had the two runs overlap"
