"""The registry's versions and its atomic ``current`` pointer; the gate."""
from __future__ import annotations

import datetime
import json
import os

import pytest

import atomic_storage
from deploy import registry as reg
from deploy import gate, registry_files, registry_records, retrain, steps
from deploy.registry import Registry, RegistryError


def make_export(registry: Registry, version: str) -> None:
    os.makedirs(registry.export_dir(version))


def test_version_ids_are_dated_and_checked():
    when = datetime.datetime(2026, 1, 22, 3, 15, 0,
                             tzinfo=datetime.timezone.utc)
    assert reg.new_version_id(when) == "20260122-031500"
    assert reg.check_version_id("20260122-031500") == "20260122-031500"
    for bad in ("", "../x", "a/b", "-x", "x" * 65, "a b", "v1\n", "v1\r"):
        with pytest.raises(RegistryError, match="bad version id"):
            reg.check_version_id(bad)


def test_new_version_refuses_to_reuse_an_id(tmp_path):
    registry = Registry(str(tmp_path))
    assert registry.new_version("v1") == "v1"
    with pytest.raises(RegistryError, match="already exists"):
        registry.new_version("v1")
    os.makedirs(registry.dataset_dir("v2"))
    with pytest.raises(RegistryError, match="already exists"):
        registry.new_version("v2")
    assert registry.new_version("v2", dataset_exists_ok=True) == "v2"
    assert registry.versions() == ["v1", "v2"]


def test_step_records_merge_and_unknown_versions_are_named(tmp_path):
    registry = Registry(str(tmp_path))
    registry.new_version("v1")
    registry.record_step("v1", "train", status="running")
    registry.record_step("v1", "train", status="done", metrics={"accuracy": 1})
    run = registry.read_run("v1")
    assert run["steps"]["train"]["status"] == "done"
    assert run["steps"]["train"]["metrics"] == {"accuracy": 1}
    with pytest.raises(RegistryError, match="no version v9.*known: v1"):
        registry.read_run("v9")


def test_current_pointer_moves_and_names_the_export(tmp_path):
    registry = Registry(str(tmp_path))
    assert registry.current() is None
    with pytest.raises(RegistryError, match="no export"):
        registry.set_current("v1")
    make_export(registry, "v1")
    make_export(registry, "v2")
    first = registry.set_current("v1", accuracy=0.5)
    assert registry.set_current("v2", accuracy=0.6) is None, \
        "a promotion judged before v1 was promoted cannot replace it"
    _, token = registry.current_versioned()
    registry.set_current("v2", token=token, accuracy=0.6)
    assert registry.set_current("v2", token=token) is None
    pointer = json.loads((tmp_path / reg.CURRENT_FILE).read_text())
    assert pointer["version"] == "v2"
    assert pointer["export_dir"] == registry.export_dir("v2")
    assert pointer["previous"] == "v1"
    assert [e["version"] for e in pointer["history"]] == ["v1", "v2"]
    assert pointer["history"][0]["accuracy"] == first["accuracy"] == 0.5
    assert registry.promoted("v1")["accuracy"] == 0.5
    assert registry.promoted("v3") is None
    with pytest.raises(RegistryError, match=r"\bv1\b.*promoted.*--step=train"):
        registry.check_not_promoted("v1", "--step=train")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_write_that_fails_midway_leaves_the_old_pointer(tmp_path, monkeypatch):
    registry = Registry(str(tmp_path))
    make_export(registry, "v1")
    make_export(registry, "v2")
    registry.set_current("v1")
    before = (tmp_path / reg.CURRENT_FILE).read_bytes()

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(atomic_storage.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.set_current("v2", token=registry.current_versioned()[1])
    assert (tmp_path / reg.CURRENT_FILE).read_bytes() == before
    assert registry.current_version() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        reg.CURRENT_FILE, reg.MODELS]


def test_a_corrupt_pointer_is_a_clear_error(tmp_path):
    (tmp_path / reg.CURRENT_FILE).write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        Registry(str(tmp_path)).current()


def test_remote_paths_are_joined_with_slashes():
    registry = Registry("gs://bucket/reg/")
    assert registry.export_dir("v1") == "gs://bucket/reg/models/v1/export"
    assert registry.current_path == "gs://bucket/reg/current"


@pytest.mark.parametrize("candidate,current,margin,promoted", [
    (0.50, None, 0.02, True),
    (0.80, 0.80, 0.02, True),
    (0.79, 0.80, 0.02, True),
    (0.77, 0.80, 0.02, False),
    (0.79, 0.80, 0.0, False),
])
def test_gate_promotes_unless_worse_by_more_than_the_margin(
        candidate, current, margin, promoted):
    report = {"candidate": {"accuracy": candidate}, "current_version": "v0",
              "current": None if current is None else {"accuracy": current}}
    verdict, reason, checks = gate.decide(report, margin)
    assert verdict is promoted
    assert ("%.4f" % candidate) in reason
    assert [c["check"] for c in checks] == ["min_accuracy", "current", "best"]


def test_driver_owned_flags_are_refused():
    with pytest.raises(retrain.RetrainError, match="--output is set by"):
        steps.split_flags("--runner=DirectRunner --output=/x",
                             steps.PIPELINE_OWNED_FLAGS, "pipeline")
    with pytest.raises(retrain.RetrainError, match="--model_dir is set by"):
        steps.split_flags("--steps=3 --model_dir /x",
                             steps.TRAINER_OWNED_FLAGS, "trainer")
    with pytest.raises(retrain.RetrainError, match="cannot parse"):
        steps.split_flags("--classes='cat", (), "pipeline")


def test_only_the_chief_records_multi_worker_training(monkeypatch):
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    assert steps.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert not steps.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["b:1", "c:1"]},
         "task": {"type": "worker", "index": 0}}))
    assert steps.is_chief()
    monkeypatch.delenv("TF_CONFIG")
    assert steps.is_chief()


def test_cli_errors_are_one_line_and_leave_current(tmp_path, capsys):
    registry = Registry(str(tmp_path))
    make_export(registry, "v1")
    registry.set_current("v1")
    before = (tmp_path / reg.CURRENT_FILE).read_bytes()
    code = retrain.main(["--registry", str(tmp_path), "--step=train"])
    assert code == retrain.EXIT_FAILED
    assert "needs --version" in capsys.readouterr().err
    code = retrain.main(["--registry", str(tmp_path), "--step=evaluate",
                         "--version=v7"])
    assert code == retrain.EXIT_FAILED
    err = capsys.readouterr().err
    assert "no version v7" in err and "current model unchanged" in err
    assert "Traceback" not in err
    assert (tmp_path / reg.CURRENT_FILE).read_bytes() == before


def test_registry_on_a_tensorflow_filesystem():
    """The non-local code path (tf.io.gfile), on TensorFlow's in-memory
    filesystem: records and the pointer are rewritten whole, not appended."""
    root = "ram://registry-%d" % os.getpid()
    registry = Registry(root)
    registry.new_version("v1")
    registry.new_version("v2")
    registry_files.makedirs(registry.export_dir("v1"))
    registry_files.makedirs(registry.export_dir("v2"))
    registry.record_step("v1", "train", status="running", note="x" * 200)
    registry.record_step("v1", "train", fresh=True, status="done")
    assert registry.read_run("v1")["steps"]["train"]["status"] == "done"
    registry.set_current("v2", reason="y" * 200)
    registry.set_current("v1", token=registry.current_versioned()[1])
    assert registry.current_version() == "v1"
    assert "reason" not in registry.current()
    assert registry.set_current("v2") is None
    assert registry.versions() == ["v1", "v2"]
    assert registry_files.listdir(root) == [reg.CURRENT_FILE, reg.MODELS]
    registry.set_fixed_eval("ram://e/eval-*", "ram://e/classes", "dataset v1")
    assert registry.fixed_eval()["source"] == "dataset v1"


def test_an_incomplete_dataset_is_named_not_trained_on(tmp_path):
    import tfrecord_schema as schema
    registry = Registry(str(tmp_path))
    data = tmp_path / reg.DATASETS / "v1"
    data.mkdir(parents=True)
    (data / schema.CLASSES_FILE).write_text("cat\n")
    (data / schema.shard_name(schema.TRAIN, 0, 2)).write_bytes(b"")
    (data / schema.shard_name(schema.EVAL, 0, 1)).write_bytes(b"")
    with pytest.raises(retrain.RetrainError) as error:
        steps.check_dataset(registry, "v1")
    message = str(error.value)
    assert "did the pipeline finish" in message
    assert schema.STATS_FILE in message
    assert schema.shard_name(schema.TRAIN, 1, 2) in message
    assert schema.shard_name(schema.EVAL, 0, 1) not in message
    code = retrain.main(["--registry", str(tmp_path), "--step=train",
                         "--version=v1"])
    assert code == retrain.EXIT_FAILED
    assert not (tmp_path / reg.MODELS / "v1").exists()


def test_a_damaged_record_is_named_in_one_line_with_what_is_wrong(tmp_path):
    registry = Registry(str(tmp_path))
    registry.new_version("v1")
    make_export(registry, "v1")
    run = registry.run_path("v1")

    def read_run():
        return registry.read_run("v1")
    os.makedirs(registry.dataset_dir("v1"))
    stats = os.path.join(registry.dataset_dir("v1"), "stats.json")
    cases = [
        (stats, b'{"classes": {"cat": {"selected": {"eval": "5"}}}}', lambda: registry_records.read_json(stats),
         "is damaged: classes.cat.selected.eval should be an integer, not a string"),
        (run, b'{"version": "v1", "steps": [', read_run, "is not valid JSON"),
        (run, b"[" * 100_000, read_run, "is not valid JSON"),
        (run, b'{"version": "v1", "steps": {"train": \xff}}', read_run,
         "is not valid JSON"),
        (run, b'{"version": "v1", "steps": []}', read_run,
         "is damaged: steps should be a JSON object, not a list"),
        (run, b'{"version": "v1"}', lambda: registry.record_step("v1", "train"),
         "is damaged: the record has no 'steps'"),
        (run, b'{"version": "v1", "steps": {"train": {"status": "done", "classes": ["a", 5]}}}',
         lambda: registry.step_status("v1", "train"),
         "is damaged: steps.train.classes[1] should be a string, not an integer"),
        (run, b'{"version": "v1", "steps": {"ca\\nt": 7}}', read_run,
         'is damaged: steps."ca\\nt" should be a JSON object, not an integer'),
        (registry.fixed_eval_path, b'{"classes_file": "c"}', registry.fixed_eval,
         "is damaged: the record has no 'eval_data'"),
        (registry.current_path, b'["v1"]', registry.current,
         "is damaged: the file should be a JSON object, not a list"),
        (registry.current_path, b'{"version": "v1", "history": [{"version": 1}]}',
         lambda: registry.promoted("v1"),
         "is damaged: history[0].version should be a string, not an integer"),
        (registry.current_path, b'{"version": "v1", "accuracy": NaN}', registry.current_version,
         "is damaged: accuracy should be a finite number, not nan"),
        (registry.eval_report_path("v1"), b'{"candidate": {"accuracy": "high"}}',
         lambda: registry.read_eval_report("v1"),
         "is damaged: candidate.accuracy should be a finite number, not a string"),
        (registry.eval_report_path("v1"), b'{"decision": {"promoted": true}}',
         lambda: registry.read_eval_report("v1"), "is damaged: decision has no 'reason'"),
    ]
    for path, content, read, problem in cases:
        with open(path, "wb") as f:
            f.write(content)
        with pytest.raises(RegistryError) as error:
            read()
        message = str(error.value)
        assert message.startswith(path + " ") and problem in message and "\n" not in message, \
            (content[:80], message)


def test_retrain_names_a_damaged_fixed_eval_set_instead_of_a_key_error(tmp_path, capsys):
    registry = Registry(str(tmp_path))
    registry.new_version("v1")
    registry.record_step("v1", "train", status="done", classes=["cat"])
    os.makedirs(registry.dataset_dir("v1"))  # a dataset of the tutorial's script: no manifest
    with open(os.path.join(registry.dataset_dir("v1"), "training.tfrecord.classes"), "w") as f:
        f.write("cat\n")
    with open(registry.fixed_eval_path, "w") as f:
        f.write('{"classes_file": "c", "source": "dataset v0"}')
    code = retrain.main(["--registry", str(tmp_path), "--step=evaluate", "--version=v1"])
    err = capsys.readouterr().err
    assert code == retrain.EXIT_FAILED and "KeyError" not in err and "Traceback" not in err
    assert "retrain failed: %s is damaged: the record has no 'eval_data'; current model " \
        "unchanged" % registry.fixed_eval_path in err


def test_a_registry_in_a_folder_named_with_wildcards_finds_its_files(tmp_path):
    from deploy import registry_files
    folder = tmp_path / "models [1]" / "datasets" / "v1"
    folder.mkdir(parents=True)
    (folder / "eval.tfrecord-00000-of-00001").write_bytes(b"")
    assert registry_files.glob(str(folder / "eval.tfrecord-*")) == [str(folder / "eval.tfrecord-00000-of-00001")]
