"""Command-line mistakes a user makes with ``python -m pipeline.run``: each is
one line on stderr and exit status 2 before the job starts, never a traceback
from inside the job, and never a dataset built from the wrong files."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

import dataset_manifest as dm
from pipeline import output_folder
from pipeline import run as run_lib

SMALL = ["--train_observations_per_class=3", "--eval_observations_per_class=1", "--output_shards=1",
         "--skip_transform"]


def _one_line_error(capsys, args: list[str], *words: str) -> str:
    code = run_lib.main(args)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_job(monkeypatch):
    """Fails the test if a run gets as far as locking its output folder."""
    def refuse(*_):
        raise AssertionError("the run went past its start-up checks")
    monkeypatch.setattr(output_folder.OutputLock, "acquire", refuse)


def test_empty_output_is_refused_not_taken_as_the_filesystem_root(capsys, bundled_sample, no_job):
    for empty in ("--output=", "--output= "):
        _one_line_error(capsys, ["--input=%s" % (bundled_sample / "cat.ndjson"), empty] + SMALL, "--output")


def test_seed_beyond_64_bits_names_its_flag(capsys, tmp_path, bundled_sample, no_job):
    seed = "1" * 70
    _one_line_error(capsys, ["--input=%s" % (bundled_sample / "cat.ndjson"), "--output=%s" % tmp_path,
                             "--seed=" + seed] + SMALL, "--seed=" + seed)


def test_unknown_runner_and_negative_workers_are_one_line(capsys, tmp_path, bundled_sample, no_job):
    args = ["--input=%s" % (bundled_sample / "cat.ndjson"), "--output=%s" % tmp_path] + SMALL
    _one_line_error(capsys, args + ["--runner=DirectRuner"], "--runner=DirectRuner")
    _one_line_error(capsys, args + ["--runner=no.such.module.Runner"], "--runner=no.such.module.Runner")
    _one_line_error(capsys, args + ["--direct_num_workers=-3"], "--direct_num_workers=-3")


def test_classes_naming_a_folder_or_a_binary_file_is_one_line(capsys, tmp_path, bundled_sample, no_job):
    args = ["--input=%s" % (bundled_sample / "cat.ndjson"), "--output=%s" % (tmp_path / "out")] + SMALL
    _one_line_error(capsys, args + ["--classes=%s" % tmp_path], "--classes=%s" % tmp_path)
    binary = tmp_path / "classes.txt"
    binary.write_bytes(b"cat\n\xff\xfe\n")
    _one_line_error(capsys, args + ["--classes=%s" % binary], "--classes=%s" % binary)


def test_one_missing_file_in_a_list_of_inputs_is_named(capsys, tmp_path, bundled_sample, no_job):
    present = bundled_sample / "cat.ndjson"
    missing = tmp_path / "cta.ndjson"
    _one_line_error(capsys, ["--input=%s,%s" % (present, missing), "--output=%s" % (tmp_path / "out")] + SMALL,
                    str(missing), "matches no file")


def test_input_file_name_that_is_not_utf8_is_refused_by_name(capsys, tmp_path, bundled_sample, no_job):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(bundled_sample / "cat.ndjson", folder / "cat.ndjson")
    with open(os.path.join(os.fsencode(folder), b"d\xffg.ndjson"), "wb") as f:
        f.write((bundled_sample / "cup.ndjson").read_bytes())
    _one_line_error(capsys, ["--input=%s" % folder, "--output=%s" % (tmp_path / "out")] + SMALL,
                    "not valid UTF-8", "d\\udcffg.ndjson")


@pytest.mark.slow
def test_output_folder_that_is_the_input_folder_never_reads_its_own_outputs(tmp_path, bundled_sample):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(bundled_sample / "cat.ndjson", folder / "cat.ndjson")
    (folder / "mixed.ndjson").write_text("not json\n")
    args = ["--input=%s" % folder, "--output=%s" % folder] + SMALL
    first = run_lib.run(args)
    assert list(folder.glob("rejects-*.ndjson"))
    second = run_lib.run(args)
    assert second == first and second["damaged_files"] == {} and second["totals"]["rejected"] == {
        "invalid_json": 1}
    dm.verify(str(folder))
    assert json.loads((folder / "stats.json").read_text()) == first


def test_gs_output_without_credentials_is_one_line(capsys, tmp_path, bundled_sample, monkeypatch):
    import atomic_storage
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*_):
        raise DefaultCredentialsError("Your default credentials were not found.")
    monkeypatch.setattr(atomic_storage, "_client", no_credentials)
    _one_line_error(capsys, ["--input=%s" % (bundled_sample / "cat.ndjson"),
                             "--output=gs://some-bucket/out"] + SMALL,
                    "gs://some-bucket/out/pipeline.lock", "credentials")


@pytest.mark.parametrize("flag, value", [
    ("--output_shards", 100_000_000), ("--train_observations_per_class", 10 ** 9),
    ("--eval_observations_per_class", 10 ** 9), ("--test_observations_per_class", 10 ** 9),
    ("--max_points", 10 ** 9), ("--max_bytes", 1 << 40), ("--direct_num_workers", 100_000)])
def test_numeric_flags_beyond_sane_bounds_are_one_line(capsys, tmp_path, bundled_sample, no_job, flag, value):
    args = ["--input=%s" % (bundled_sample / "cat.ndjson"), "--output=%s" % (tmp_path / "out")] + SMALL
    line = _one_line_error(capsys, args + ["%s=%d" % (flag, value)], "%s=%d: must be at most" % (flag, value))
    assert len(line) < 200


def test_classes_given_a_data_file_quotes_a_short_prefix(capsys, tmp_path, bundled_sample, no_job):
    args = ["--input=%s" % (bundled_sample / "cat.ndjson"), "--output=%s" % (tmp_path / "out")] + SMALL
    line = _one_line_error(capsys, args + ["--classes=%s" % (bundled_sample / "cup.ndjson")], "--classes: ",
                           "and 23 more not in the input")
    assert len(line) < 300, line
    names = ",".join("c%d-%s" % (i, "x" * 5000) for i in range(3))
    assert len(_one_line_error(capsys, args + ["--classes=" + names], "--classes: ")) < 300


@pytest.mark.slow
def test_an_output_folder_inside_the_input_glob_is_never_read(tmp_path, bundled_sample, capsys):
    """``--input='DIR/**' --output=DIR/out`` twice: the second run does not
    read the first one's manifest, stats, rejects or shards."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("cat.ndjson", "cup.ndjson"):
        shutil.copy(bundled_sample / name, folder / name)
    (folder / "bad.ndjson").write_text("not json\n")
    out = folder / "out"
    args = ["--input=%s" % (folder / "**"), "--output=%s" % out] + SMALL
    first = run_lib.run(args)
    digest = dm.digest(str(out))
    assert json.loads((out / "manifest.json").read_text())["inputs"] == 3
    capsys.readouterr()
    second = run_lib.run(args)
    assert second == first and dm.digest(str(out)) == digest
    assert second["totals"]["rejected"] == {"invalid_json": 1}
    assert re.search(r"\b\d+ files of the input left out\b", capsys.readouterr().out)


def test_empty_input_is_refused_not_taken_as_the_bundled_sample(capsys, no_job):
    """``--input=$DIR`` with DIR unset: the sample is read only without --input."""
    for empty in ("--input=", "--input= ", "--input=,", "--input= , "):
        _one_line_error(capsys, [empty, "--output=unused"] + SMALL, "--input", "names no file")


def test_classes_naming_a_fifo_a_device_or_a_huge_file_is_one_line(capsys, tmp_path, no_job):
    """A FIFO would block the open for a writer and /dev/zero never end."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"cat\n" * (1 << 19))
    for value, words in ((fifo, ("a FIFO, not a regular file",)),
                         ("/dev/zero", ("a character device",)),
                         (tmp_path, ("a directory",)),
                         (huge, ("more than 1048576 bytes",))):
        _one_line_error(capsys, ["--classes=%s" % value, "--output=unused"] + SMALL,
                        "--classes=", *words)
