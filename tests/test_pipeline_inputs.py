"""Which files a run reads (``pipeline.inputs``, ``run.match_inputs``): what
the patterns match, directories and special files included, less what
pipeline runs wrote. No job runs here."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import inputs
from pipeline import run as run_lib


def _tree(root: Path) -> Path:
    """An input tree: class files, a directory named like one, a plain
    sub-folder, a FIFO and a dangling link."""
    (root / "sub").mkdir(parents=True)
    for name in ("cat.ndjson", "sub/dog.ndjson", "notes.txt"):
        (root / name).write_text('{"word": "x"}\n')
    (root / "x.ndjson").mkdir()
    os.mkfifo(root / "pipe.ndjson")
    os.symlink(root / "removed.ndjson", root / "gone.ndjson")
    return root


@pytest.mark.parametrize("pattern, names", [
    ("*.ndjson", ["cat.ndjson", "gone.ndjson", "pipe.ndjson", "x.ndjson"]),
    ("*", ["cat.ndjson", "gone.ndjson", "notes.txt", "pipe.ndjson", "x.ndjson"]),
    ("**", ["cat.ndjson", "gone.ndjson", "notes.txt", "pipe.ndjson", "sub/dog.ndjson", "x.ndjson"]),
    ("*/*.ndjson", ["sub/dog.ndjson"]),
    ("x.ndjson", ["x.ndjson"]),
])
def test_a_pattern_lists_directories_named_like_inputs_fifos_and_dangling_links(tmp_path, pattern, names):
    root = _tree(tmp_path / "in")
    got = inputs.list_local(str(root / pattern))
    assert sorted(os.path.relpath(p, root) for p in got) == names


def test_a_directory_whose_files_the_pattern_reads_is_walked_not_reported(tmp_path):
    (tmp_path / "x.ndjson").mkdir()
    (tmp_path / "x.ndjson" / "a.ndjson").write_text("")
    assert inputs.list_local(str(tmp_path / "**")) == [str(tmp_path / "x.ndjson" / "a.ndjson")]
    assert inputs.list_local(str(tmp_path / "*.ndjson")) == [str(tmp_path / "x.ndjson")]


def test_a_folder_input_reaches_a_directory_named_like_an_input(tmp_path, capsys):
    root = _tree(tmp_path / "in")
    files, skipped = inputs.match_inputs(str(root), None, str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["cat.ndjson", "gone.ndjson", "pipe.ndjson", "x.ndjson"]
    assert skipped == []


def _with_outputs(root: Path) -> Path:
    """``root`` holding a user's file and the outputs of two runs: one into
    ``root`` itself, one into ``root/old``; and this run's ``root/new``."""
    root.mkdir()
    (root / "cat.ndjson").write_text("")
    for folder in (root, root / "old"):
        (folder / "transform_output" / "transform_fn").mkdir(parents=True)
        (folder / ".tmp-work").mkdir()
        for name in ("manifest.json", "stats.json", "rejects-00000-of-00001.ndjson",
                     "training.tfrecord-00000-of-00001", "training.tfrecord.classes",
                     "transform_output/transform_fn/x.ndjson", ".tmp-work/spill-000001"):
            (folder / name).write_text("")
    (root / "old" / "dog.ndjson").write_text("")  # inside another run's folder: skipped too
    (root / "new").mkdir()
    (root / "new" / "leftover.ndjson").write_text("")
    return root


def test_nothing_a_run_writes_is_read_whatever_the_glob(tmp_path):
    root = _with_outputs(tmp_path / "data")
    (found,), skipped = inputs.match([str(root / "**")], [str(root)], str(root / "new"))
    assert found == [str(root / "cat.ndjson")]
    names = sorted(os.path.relpath(p, root) for p in skipped)
    assert names == sorted(
        [prefix + name for prefix in ("", "old/") for name in (
            "manifest.json", "stats.json", "rejects-00000-of-00001.ndjson", "training.tfrecord-00000-of-00001",
            "training.tfrecord.classes", "transform_output/transform_fn/x.ndjson", ".tmp-work/spill-000001")]
        + ["old/dog.ndjson", "new/leftover.ndjson"])


def test_a_lock_marks_an_output_folder_and_a_pattern_inside_one_skips_its_outputs(tmp_path):
    root = tmp_path / "data"
    (root / "running" / "transform_output").mkdir(parents=True)
    (root / "running" / "pipeline.lock").write_text("{}")
    (root / "running" / "transform_output" / "a.ndjson").write_text("")
    (root / "running" / "mine.ndjson").write_text("")
    outputs = inputs.RunOutputs(str(tmp_path / "elsewhere"))
    assert outputs.is_output_folder(str(root / "running"))
    # Named from inside the folder: its own files are read, what a run wrote is not.
    assert not outputs.written_by_a_run(str(root / "running" / "mine.ndjson"), str(root / "running"))
    assert outputs.written_by_a_run(str(root / "running" / "transform_output" / "a.ndjson"),
                                    str(root / "running" / "transform_output"))
    # Reached from above: the whole folder is another run's.
    assert outputs.written_by_a_run(str(root / "running" / "mine.ndjson"), str(root))


def test_input_that_matches_only_run_outputs_is_one_line(tmp_path, capsys):
    root = _with_outputs(tmp_path / "data")
    with pytest.raises(run_lib.PipelineError) as error:
        inputs.match_inputs(str(root / "*.json"), None, str(tmp_path / "out"))
    message = str(error.value)
    assert str(root / "*.json") in message
    assert "manifest.json" in message or "stats.json" in message, "names a run's output it left out"


def test_object_store_patterns_are_listed_by_beam_and_checked_for_run_outputs(monkeypatch):
    from apache_beam.io.filesystem import FileMetadata, MatchResult
    from apache_beam.io.filesystems import FileSystems

    objects = ["gs://b/in/cat.ndjson", "gs://b/in/run/stats.json", "gs://b/in/run/dog.ndjson",
               "gs://b/in/run/manifest.json"]

    def match(patterns, limits=None):
        assert patterns == ["gs://b/in/**"]
        return [MatchResult(patterns[0], [FileMetadata(p, 1) for p in objects])]

    monkeypatch.setattr(FileSystems, "match", match)
    monkeypatch.setattr(FileSystems, "exists", lambda path: path in objects)
    (found,), skipped = inputs.match(["gs://b/in/**"], ["gs://b/in"], "gs://b/out")
    assert found == ["gs://b/in/cat.ndjson"]
    assert skipped == ["gs://b/in/run/dog.ndjson", "gs://b/in/run/manifest.json", "gs://b/in/run/stats.json"]


@pytest.mark.parametrize("folder", ["run [1]", "a*b", "what?", "x[y"])
def test_a_path_that_exists_is_read_whatever_its_names_hold(tmp_path, folder):
    """A folder or file named with * ? [ (a copy named "run [1]") is that
    folder or file; before, it was taken as a pattern and matched nothing."""
    base = tmp_path / folder
    base.mkdir()
    for name in ("cat.ndjson", "apple.ndjson"):
        (base / name).write_text('{"word": "cat"}\n')
    assert inputs.match_inputs(str(base), None, str(tmp_path / "out")).files == sorted(
        str(base / name) for name in ("apple.ndjson", "cat.ndjson"))
    assert inputs.match_inputs(str(base / "cat.ndjson"), None, str(tmp_path / "out")).files == [
        str(base / "cat.ndjson")]


def test_a_pattern_is_still_a_pattern_where_no_such_path_exists(tmp_path):
    for name in ("cat.ndjson", "cut.ndjson", "dog.ndjson"):
        (tmp_path / name).write_text('{"word": "cat"}\n')
    out = str(tmp_path / "out")
    assert [Path(f).name for f in inputs.match_inputs(str(tmp_path / "c?t.ndjson"), None, out).files] == [
        "cat.ndjson", "cut.ndjson"]
    assert [Path(f).name for f in inputs.match_inputs(str(tmp_path / "[cd]*.ndjson"), None, out).files] == [
        "cat.ndjson", "cut.ndjson", "dog.ndjson"]


def test_a_pattern_within_a_folder_named_with_wildcards(tmp_path):
    base = tmp_path / "run [1]"
    base.mkdir()
    for name in ("cat.ndjson", "cut.ndjson", "dog.ndjson"):
        (base / name).write_text('{"word": "cat"}\n')
    out = str(tmp_path / "out")
    assert [Path(f).name for f in inputs.match_inputs(str(base / "c?t.ndjson"), None, out).files] == [
        "cat.ndjson", "cut.ndjson"]


def test_a_folder_or_file_named_with_a_comma_is_one_input(tmp_path):
    """--input takes a comma-separated list; a path that exists as written is
    one input, and a list is split at every comma."""
    base = tmp_path / "drawings, 2017"
    base.mkdir()
    for name in ("cat.ndjson", "dog.ndjson"):
        (base / name).write_text('{"word": "cat"}\n')
    out = str(tmp_path / "out")
    assert len(inputs.match_inputs(str(base), None, out).files) == 2
    assert inputs.match_inputs(str(base / "cat.ndjson"), None, out).files == [str(base / "cat.ndjson")]
    with pytest.raises(run_lib.PipelineError, match="matches no file"):
        inputs.match_inputs("%s,%s" % (base / "cat.ndjson", base / "dog.ndjson"), None, out)
