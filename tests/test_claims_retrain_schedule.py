"""docs/deploy.md 'Scheduled retraining': version ids of at most 64
characters, dated ids taken in the same second becoming `<id>-2`, `<id>-3`,
a promotion judged again at most 10 times, the CronJob's Monday 03:00 UTC in
one GPU pod, the DAG's T4 and the environment variables it reads."""
from __future__ import annotations

import argparse
import ast
import re

import pytest
import yaml

from deploy import registry as reg
from deploy import steps
from deploy.errors import RetrainError
from deploy.registry import Registry, RegistryError
from sample_paths import REPO

DEPLOY_DOC = REPO / "docs" / "deploy.md"
DAG_FILE = REPO / "deploy" / "airflow" / "quickdraw_retrain_dag.py"


def test_a_version_id_has_at_most_64_characters():
    """docs/deploy.md:384-386: letters, digits, `.`, `_` and `-`, starting
    with a letter or digit, at most 64."""
    for good in ("a" * 64, "7" + "._-" * 21, "v1.2_3-x"):
        assert reg.check_version_id(good) == good
    for bad in ("a" * 65, ".a", "_a", "a+b"):
        with pytest.raises(RegistryError):
            reg.check_version_id(bad)


def test_ids_taken_in_the_same_second_get_2_and_3(tmp_path, monkeypatch):
    """docs/deploy.md:445-446: a dated id taken in the same second by another
    run becomes `<id>-2`, `<id>-3`..."""
    monkeypatch.setattr(reg, "new_version_id", lambda when=None: "20260105-030000")
    registry = Registry(str(tmp_path))
    assert [registry.new_version() for _ in range(3)] == \
        ["20260105-030000", "20260105-030000-2", "20260105-030000-3"]


class _MovingRegistry:
    """A registry whose ``current`` moves between every read and every swap."""

    def __init__(self):
        self.reads = 0

    def step_status(self, version, step):
        return "done"

    def current_versioned(self):
        self.reads += 1
        return {"version": "other-%d" % self.reads, "promotion_id": str(self.reads), "history": []}, self.reads

    def read_eval_report(self, version):
        return {"candidate": {"accuracy": 0.9}, "current_key": None, "current_version": None}

    def record_step(self, *args, **kwargs):
        pass


def test_a_promotion_is_judged_again_up_to_10_times_then_fails(monkeypatch):
    """docs/deploy.md:450-453: promotions that lose the race are evaluated
    again against the new `current`, up to 10 times, then fail asking for a
    re-run."""
    evaluations = []
    monkeypatch.setattr(steps, "run_evaluate", lambda registry, version, args: evaluations.append(version) or {})
    args = argparse.Namespace(promotion_margin=0.02, min_accuracy=0.0)
    with pytest.raises(RetrainError, match="run the promote step again"):
        steps.run_promote(_MovingRegistry(), "v1", args)
    assert len(evaluations) == 10


def test_the_cronjob_runs_mondays_at_3_utc_in_one_gpu_pod():
    """docs/deploy.md:548-549: every Monday at 03:00 UTC in one GPU pod."""
    cron = yaml.safe_load((REPO / "deploy" / "k8s" / "retrain-cronjob.yaml").read_text())
    minute, hour, day, month, weekday = cron["spec"]["schedule"].split()
    assert (minute, hour, day, month, weekday) == ("0", "3", "*", "*", "1")
    assert cron["spec"]["timeZone"] in ("Etc/UTC", "UTC")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1


def _dag_assignments() -> dict[str, ast.AST]:
    tree = ast.parse(DAG_FILE.read_text())
    return {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def test_the_dag_trains_on_a_t4():
    """docs/deploy.md:524-525: train runs as a Vertex AI custom job from the
    trainer image, training on a T4."""
    values = _dag_assignments()
    gpu = ast.literal_eval(values["GPU_MACHINE"])
    assert gpu["accelerator_type"] == "NVIDIA_TESLA_T4" and gpu["accelerator_count"] == 1
    tree = ast.parse(DAG_FILE.read_text())
    machines = {ast.literal_eval(call.args[0]): call.args[1].id for call in ast.walk(tree)
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "retrain_job"}
    assert machines["train"] == "GPU_MACHINE"


def test_the_dag_reads_the_environment_variables_the_doc_lists():
    """docs/deploy.md:540-543: configure it with QUICKDRAW_PROJECT, ...,
    QUICKDRAW_MIN_ACCURACY: the DAG reads exactly these."""
    text = DEPLOY_DOC.read_text()
    listed = text.split("Configure it with", 1)[1].split("then", 1)[0]
    named = set(re.findall(r"`(QUICKDRAW_\w+)`", listed))
    read = set(re.findall(r"os\.environ\.get\(\s*\"(QUICKDRAW_\w+)\"", DAG_FILE.read_text()))
    assert len(named) == 8 and named == read, (named, read)
