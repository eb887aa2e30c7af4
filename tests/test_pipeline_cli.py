"""The command line: --help, unknown options, one-line user errors with exit
status 2 before the job starts, the output folder's lock."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dataset_manifest as dm
import tfrecord_schema as schema
from pipeline import output_folder
from pipeline import run as run_lib
from pipeline.options import help_parser

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--train_observations_per_class=3", "--eval_observations_per_class=1", "--output_shards=1",
         "--skip_transform"]


def _main(capsys, args: list[str]) -> tuple[int, str]:
    code = run_lib.main(args)
    return code, capsys.readouterr().err


def _one_line_error(capsys, args: list[str], *words: str, job_ran: bool = False) -> str:
    """The error's single line; before a job, the only line on stderr."""
    code, err = _main(capsys, args)
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], err
    assert job_ran or len(lines) == 1, err
    for w in words:
        assert w in errors[0]
    return errors[0]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as done:
        run_lib.main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for dest in help_parser().dests():
        assert "--" + dest in text
    for shown in ("(default: the tutorial's 10000; 20 when reading the bundled sample)",
                  "(default: the tutorial's 1000; 5 when reading the bundled sample)",
                  "(default: out/dataset)", "(default: 0)",
                  "--runner", "Exit status"):
        assert shown in text, shown


def test_misspelled_option_names_the_closest(capsys, tmp_path):
    _one_line_error(capsys, ["--train_observations_per_clas=20", "--output=%s" % tmp_path],
                    "--train_observations_per_clas", "did you mean --train_observations_per_class?")
    _one_line_error(capsys, ["--no_such_thing_at_all=1"], "unknown option --no_such_thing_at_all")
    _one_line_error(capsys, ["stray"], "unexpected argument 'stray'")
    assert not (tmp_path / dm.MANIFEST_FILE).exists()


@pytest.mark.slow
def test_command_prints_a_first_line_at_once_and_a_user_error_as_the_only_stderr_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline.run", "--output=%s" % tmp_path,
                           "--train_observations_per_clas=20"], cwd=ROOT, capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 2
    assert done.stdout.startswith("Quick, Draw! pipeline: loading")
    assert done.stderr.splitlines() == [
        "error: unknown option --train_observations_per_clas; did you mean "
        "--train_observations_per_class? (see --help)"]


def test_bad_values_name_their_flag(capsys, tmp_path):
    out = "--output=%s" % (tmp_path / "out")
    _one_line_error(capsys, [out, "--eval_observations_per_class=-1"], "--eval_observations_per_class=-1")
    _one_line_error(capsys, [out, "--output_shards=0"], "--output_shards=0")
    _one_line_error(capsys, [out, "--max_points=-5"], "--max_points=-5")
    _one_line_error(capsys, [out, "--seed=abc"], "--seed", "abc")
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_or_unwritable_is_refused_before_the_job(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    _one_line_error(capsys, ["--output=%s" % (tmp_path / "file")] + SMALL, "is a file")
    _one_line_error(capsys, ["--output=%s" % (tmp_path / "file" / "sub")] + SMALL, "is a file")
    # /sys is read-only even for root.
    _one_line_error(capsys, ["--output=/sys/quickdraw-out"] + SMALL, "--output=/sys/quickdraw-out",
                    "not writable")
    _one_line_error(capsys, ["--output=%s" % (tmp_path / "ok"), "--temp_location=/sys/quickdraw-tmp"]
                    + SMALL, "--temp_location")


def test_class_absent_from_per_class_files_is_refused_at_start(capsys, tmp_path, bundled_sample):
    out = tmp_path / "out"
    _one_line_error(capsys, ["--input=%s" % bundled_sample, "--output=%s" % out, "--classes=cat,cta"] + SMALL,
                    "--classes: cta not in the input", "closest: cat")
    assert not out.exists()


@pytest.mark.slow
def test_class_absent_from_a_mixed_file_is_refused_at_the_end_without_a_dataset(capsys, tmp_path,
                                                                                bundled_sample):
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes((bundled_sample / "cat.ndjson").read_bytes() + (bundled_sample / "cup.ndjson").read_bytes())
    out = tmp_path / "out"
    line = _one_line_error(capsys, ["--input=%s" % mixed, "--output=%s" % out, "--classes=cat,notaclass"] + SMALL,
                           "notaclass not in the input", "no dataset was written", job_ran=True)
    assert "cat," not in line
    assert not list(out.glob("training.tfrecord*")) and (out / schema.STATS_FILE).exists()
    with pytest.raises(dm.ManifestError, match="incomplete"):
        dm.verify(str(out))


@pytest.mark.slow
def test_with_no_input_nor_counts_the_sample_gives_a_dataset_with_train_and_eval(capsys, tmp_path):
    """The bundled sample has 25 drawings a class: the tutorial's 10,000 + 1,000
    would leave eval empty, and the trainer would refuse the dataset."""
    out = tmp_path / "out"
    code, err = _main(capsys, ["--output=%s" % out, "--skip_transform", "--output_shards=1"])
    assert code == 0, err
    doc = dm.verify(str(out))
    assert doc["options"]["train_observations_per_class"] == 20
    assert doc["options"]["eval_observations_per_class"] == 5
    assert doc["counts"]["selected"]["train"] == 20 * 20 and doc["counts"]["selected"]["eval"] == 20 * 5


def test_counts_given_with_no_input_are_kept(capsys, tmp_path):
    out = tmp_path / "out"
    code, err = _main(capsys, ["--output=%s" % out, "--classes=cat"] + SMALL)
    assert code == 0, err
    assert dm.verify(str(out))["options"]["train_observations_per_class"] == 3


def test_runner_options_pass_through_and_the_run_is_sealed(capsys, tmp_path, bundled_sample):
    out = tmp_path / "out"
    code, err = _main(capsys, ["--input=%s" % (bundled_sample / "cat.ndjson"), "--output=%s" % out,
                               "--runner=DirectRunner", "--direct_num_workers=1", "--project=nowhere",
                               "--temp_location=%s" % (tmp_path / "tmp"), "--flink_master=[auto]"] + SMALL)
    assert code == 0, err
    doc = dm.verify(str(out))
    assert doc["options"]["train_observations_per_class"] == 3 and "output" not in doc["options"]
    assert doc["counts"]["selected"]["train"] == 3 and doc["counts"]["classes"] == 1
    assert not (out / dm.LOCK_FILE).exists()


@pytest.mark.slow
def test_dataflow_template_entry_point_runs_the_pipeline(tmp_path, bundled_sample):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "deploy/dataflow/main.py", "--input=%s" % (bundled_sample / "cat.ndjson"),
         "--output=%s" % out, "--skip_transform=true", "--raster=false",
         "--train_observations_per_class=2", "--eval_observations_per_class=1", "--output_shards=1"],
        cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert dm.verify(str(out))["counts"]["selected"]["train"] == 2


# The lock.

def _lock_file(folder: Path, **owner) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / dm.LOCK_FILE).write_text(json.dumps(owner))


def test_second_run_into_a_locked_folder_refuses_in_one_line(capsys, tmp_path, bundled_sample):
    out = tmp_path / "out"
    with output_folder.OutputLock(str(out)):
        line = _one_line_error(capsys, ["--input=%s" % bundled_sample, "--output=%s" % out] + SMALL,
                               "another run is writing", "pid %d" % os.getpid(), str(out / dm.LOCK_FILE))
        assert socket.gethostname() in line
    assert not (out / dm.LOCK_FILE).exists()


def test_lock_of_a_dead_process_is_taken_over_with_a_log_line(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _lock_file(tmp_path, host=socket.gethostname(), pid=gone.pid, time=time.time() - 60, token="old")
    lock = output_folder.OutputLock(str(tmp_path))
    with caplog.at_level("WARNING"):
        lock.acquire()
    assert "Took over" in caplog.text and str(gone.pid) in caplog.text
    assert json.loads((tmp_path / dm.LOCK_FILE).read_text())["token"] == lock.owner["token"]
    lock.release()
    assert not (tmp_path / dm.LOCK_FILE).exists()


def test_lock_whose_pid_now_names_a_newer_process_is_taken_over(tmp_path):
    _lock_file(tmp_path, host=socket.gethostname(), pid=os.getpid(), time=time.time() - 10 ** 7, token="old")
    with output_folder.OutputLock(str(tmp_path)) as lock:
        assert json.loads((tmp_path / dm.LOCK_FILE).read_text())["token"] == lock.owner["token"]


def test_lock_of_another_host_is_not_taken_and_release_leaves_others_locks(tmp_path):
    _lock_file(tmp_path, host="elsewhere.example", pid=1, time=time.time(), token="theirs")
    with pytest.raises(output_folder.OutputError, match="host elsewhere.example, pid 1"):
        output_folder.OutputLock(str(tmp_path)).acquire()
    output_folder.OutputLock(str(tmp_path)).release()
    assert json.loads((tmp_path / dm.LOCK_FILE).read_text())["token"] == "theirs"


def test_earlier_outputs_are_removed_and_others_kept(tmp_path):
    names = ["training.tfrecord-00000-of-00099", "test.tfrecord-00001-of-00002", "rejects-00000-of-00003.ndjson",
             schema.STATS_FILE, schema.LENGTH_STATS_FILE, schema.CLASSES_FILE, ".tmp-1a2b-stats.json",
             "notes.txt"]
    for n in names:
        (tmp_path / n).write_text("x")
    for d in ("transform_output/transform_fn", "beam-temp-rejects-0123", ".tmp-transform/abc", "beam-temp-empty"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    (tmp_path / "transform_output/transform_fn/saved_model.pb").write_text("x")
    (tmp_path / "beam-temp-rejects-0123/part").write_text("x")
    removed = output_folder.remove_outputs(str(tmp_path), keep=output_folder.DIAGNOSTICS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "rejects-00000-of-00003.ndjson",
                                                         schema.STATS_FILE]
    assert "transform_output" in removed and "beam-temp-empty" in removed
    output_folder.remove_outputs(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
