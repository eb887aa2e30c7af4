"""Attacks on local paths whose names hold pattern characters: every reader
that takes a path or pattern (the pipeline's --input, the trainer's
list_files, render's resolve_inputs, the server's example files, the
registry's glob) finds a file in a folder named with ] ! [!x] [ * ? a comma,
a leading dash, spaces or non-ASCII letters, and through a symlinked folder."""
from __future__ import annotations

import os

import pytest

import dataset_manifest
import local_files
import tfrecord_schema as schema

LINE = (b'{"word":"cat","countrycode":"US","timestamp":"2017-01-01 00:00:00.00000 UTC",'
        b'"recognized":true,"key_id":"1","drawing":[[[0,1],[0,1]]]}\n')
NAMES = ["run ]1[", "a!b", "[!x]", "-dash", " lead", "trail ", "\u00fcn\u00ef", "a[b]", "a[", "c*t",
         "c?t", "]", "[]", "[!]", "x, y", "a{b,c}", "back\\slash", "b\\[1]"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_input_in_a_folder_named_with_pattern_characters(name, tmp_path):
    from pipeline import inputs
    folder = os.path.join("in", name)
    os.makedirs(folder)
    with open(os.path.join(folder, "cat.ndjson"), "wb") as f:
        f.write(LINE)
    want = [os.path.join(folder, "cat.ndjson")]
    for given in (folder, folder + "/", os.path.join(folder, "cat.ndjson")):
        assert inputs.match_inputs(given, None, str(tmp_path / "out")).files == want, given
    for pattern in (folder + "/*.ndjson", folder + "/c?t.ndjson"):  # a folder with a comma too
        assert inputs.match_inputs(pattern, None, str(tmp_path / "out")).files == want, pattern


@pytest.mark.parametrize("name", NAMES)
def test_every_reader_finds_a_shard_in_a_folder_named_with_pattern_characters(name):
    from deploy import registry_files
    from pipeline.drawing_readers import resolve_inputs
    from serving.examples import example_files
    from trainer.data import list_files
    folder = os.path.join("ds", name)
    os.makedirs(folder)
    shard = os.path.join(folder, schema.shard_name(schema.EVAL, 0, 1))
    open(shard, "wb").close()
    pattern = os.path.join(folder, schema.shard_pattern(schema.EVAL))
    for given in (pattern, shard):
        assert list_files(given) == [shard], given
        assert [str(p) for p in resolve_inputs(given)] == [shard], given
        assert example_files(given) == [shard], given
        assert registry_files.glob(given) == [shard], given
    assert [str(p) for p in resolve_inputs(folder)] == [shard]
    assert example_files(folder) == [shard]


def test_a_symlinked_folder_named_with_brackets_is_read_by_the_trainer_and_render():
    from pipeline.drawing_readers import resolve_inputs
    from trainer.data import list_files
    os.makedirs("real")
    open(os.path.join("real", schema.shard_name(schema.EVAL, 0, 1)), "wb").close()
    os.symlink("real", "link [1]")
    assert [str(p) for p in resolve_inputs(os.path.join("link [1]", schema.shard_pattern(schema.EVAL)))] == [
        os.path.join("link [1]", schema.shard_name(schema.EVAL, 0, 1))]
    assert [os.path.normpath(f) for f in list_files(os.path.join("link [1]", schema.shard_pattern(schema.EVAL)))] == [
        os.path.join("link [1]", schema.shard_name(schema.EVAL, 0, 1))]


def test_escape_pattern_matches_only_itself():
    import fnmatch
    import glob
    for name in NAMES + ["*", "?", "[", "[[", "**"]:
        escaped = local_files.escape_pattern(name)
        assert fnmatch.fnmatchcase(name, escaped)
        assert glob.escape(name) == escaped or fnmatch.fnmatchcase(name, glob.escape(name))
    assert not fnmatch.fnmatchcase("ab", local_files.escape_pattern("a?"))
    assert not fnmatch.fnmatchcase("axb", local_files.escape_pattern("a*b"))


def test_literal_folder_leaves_remote_and_missing_folders_as_patterns():
    assert local_files.literal_folder("gs://b/run [1]/*.x") == "gs://b/run [1]/*.x"
    assert local_files.literal_folder("missing [1]/*.x") == "missing [1]/*.x"
    os.makedirs("here [1]")
    assert local_files.literal_folder("here [1]/*.x") == "here [[]1]/*.x"
    assert local_files.literal_folder("plain/*.x") == "plain/*.x"


@pytest.mark.parametrize("rel,temporary", [
    (".tmp-x", True), ("sub/.tmp-x", True), (".tmp-transform/a/b", True), ("beam-temp-1/x", True),
    ("transform_output/beam-temp-9/x", True), ("tmp-x", False), ("x.tmp-", False),
    ("xbeam-temp-1", False), ("sub/xbeam-temp-1/y", False), ("eval.tfrecord-00000-of-00001", False),
    (".tmp", False)])
def test_which_names_verify_takes_for_temporary(rel, temporary):
    assert dataset_manifest._is_temporary(rel) is temporary


def test_no_reader_of_a_dataset_folder_reads_a_temporary_name():
    """A late twin's ``.tmp-`` shard beside the real one is ignored by verify
    and read by no reader (they glob the shard pattern, which needs the split's name first)."""
    from pipeline.drawing_readers import resolve_inputs
    from serving.examples import example_files
    from trainer.data import list_files
    os.makedirs("ds")
    shard = schema.shard_name(schema.EVAL, 0, 1)
    for name in (shard, ".tmp-" + shard, "beam-temp-" + shard):
        open(os.path.join("ds", name), "wb").close()
    open(os.path.join("ds", schema.STATS_FILE), "wb").close()
    want = [os.path.join("ds", shard)]
    assert list_files(os.path.join("ds", schema.shard_pattern(schema.EVAL))) == want
    assert [str(p) for p in resolve_inputs("ds")] == want
    assert example_files("ds") == want


def test_the_pipeline_reads_a_symlinked_folder_named_with_brackets_and_wildcards_below_one():
    """The walk starts at the folder the pattern names literally (a link
    included), and a wildcard below an existing bracketed folder still works."""
    from pipeline import inputs
    os.makedirs("s/real")
    with open("s/real/cat.ndjson", "wb") as f:
        f.write(LINE)
    os.symlink("real", "s/link [1]")
    os.makedirs("run [1]/sub1")
    with open("run [1]/sub1/cat.ndjson", "wb") as f:
        f.write(LINE)
    for given in ("s/link [1]", "s/link [1]/cat.ndjson", "s/link [1]/*.ndjson"):
        assert inputs.match_inputs(given, None, "out").files == ["s/link [1]/cat.ndjson"], given
    for given in ("run [1]/*/cat.ndjson", "run [1]/sub*/cat.ndjson", "run [1]/**"):
        assert inputs.match_inputs(given, None, "out").files == ["run [1]/sub1/cat.ndjson"], given


def test_a_backslash_in_a_folder_name_is_a_character_for_tensorflow_too():
    from trainer.data import list_files
    folder = "q\\b [1]"
    os.makedirs(folder)
    shard = os.path.join(folder, schema.shard_name(schema.EVAL, 0, 1))
    open(shard, "wb").close()
    assert list_files(os.path.join(folder, schema.shard_pattern(schema.EVAL))) == [shard]
    assert list_files(shard) == [shard]


def test_no_warning_for_a_bracket_in_an_input_path(recwarn):
    from pipeline import inputs
    os.makedirs("w [1]")
    with open("w [1]/cat.ndjson", "wb") as f:
        f.write(LINE)
    inputs.match_inputs("w [1]", None, "out")
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]
