"""``quickdraw-render`` reads regular files only, and a line only up to the
cap: a FIFO, a device or a directory named like an ndjson file is a damaged
file found before any open that could block, and a gzip file that expands to
a huge line is read in bounded memory."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import drawing_readers, render
from sample_paths import BUNDLED_SAMPLE
from special_files import SPECIAL_FILES, make_special_files

ROOT = Path(__file__).resolve().parent.parent


def _inputs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "cat.ndjson").write_bytes((BUNDLED_SAMPLE / "cat.ndjson").read_bytes())
    make_special_files(folder)
    return folder


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_fifos_devices_and_directories_are_damaged_files_and_the_rest_is_drawn(tmp_path, how):
    folder = _inputs(tmp_path / "in")
    pattern = str(folder) if how == "folder" else str(folder / "*")
    out = tmp_path / "m.png"
    proc = subprocess.run([sys.executable, "-m", "pipeline.render", "--input", pattern, "--output", str(out),
                           "--rows", "1", "--cols", "2", "--cell", "64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert "4 damaged_file" in proc.stdout and out.is_file()
    for name, (_, kind) in SPECIAL_FILES.items():
        assert any(str(folder / name) in line and kind in line for line in proc.stderr.splitlines()), kind


def test_a_special_file_named_alone_is_one_warning_and_one_error(tmp_path, capsys):
    folder = _inputs(tmp_path / "in")
    assert render.main(["--input", str(folder / "pipe.ndjson"), "--output", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "pipe.ndjson" in err[0] and "FIFO" in err[0] and "1 damaged_file" in err[1], err


def test_a_gzip_that_expands_to_a_huge_line_is_read_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.ndjson.gz"
    good = (BUNDLED_SAMPLE / "cat.ndjson").read_bytes().splitlines()[0]
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(128):
            f.write(b"x" * (1 << 20))
        f.write(b"\n" + good + b"\n")
    rejects = __import__("collections").Counter()
    tracemalloc.start()
    try:
        found = list(drawing_readers.read_ndjson(path, rejects, False, drawing_readers.Limits(max_bytes=100_000)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(found) == 1 and found[0].word == "cat" and rejects == {"too_many_bytes": 1}
    assert peak < 16 << 20, peak


@pytest.mark.parametrize("folder", ["run [1]", "a*b?"])
def test_inputs_in_a_folder_named_with_wildcards_are_found(tmp_path, folder):
    """A folder or file that exists as written is itself, not a pattern."""
    base = tmp_path / folder
    base.mkdir()
    for name in ("cat.ndjson", "apple.ndjson"):
        (base / name).write_bytes((BUNDLED_SAMPLE / name).read_bytes())
    expected = [base / "apple.ndjson", base / "cat.ndjson"]
    assert drawing_readers.resolve_inputs(str(base)) == expected
    assert drawing_readers.resolve_inputs(str(base / "cat.ndjson")) == [base / "cat.ndjson"]
    assert drawing_readers.resolve_inputs(str(base / "*.ndjson")) == expected


def test_held_out_examples_in_a_folder_named_with_wildcards_are_found(tmp_path):
    from serving import examples
    base = tmp_path / "run [1]"
    base.mkdir()
    shards = [base / "eval.tfrecord-00000-of-00001", base / "test.tfrecord-00000-of-00001"]
    for shard in shards:
        shard.write_bytes(b"")
    assert examples.example_files(str(base)) == [str(s) for s in shards]
    assert examples.example_files(str(shards[0])) == [str(shards[0])]
