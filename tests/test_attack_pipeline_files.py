"""``python -m pipeline.run`` over real drawings mixed with damaged and odd
files: CRLF and BOM, an empty file, no trailing newline, a 5 MB line, a
6.5M-point line, NUL bytes, invalid UTF-8 mid-line, a cut and a corrupt gzip,
a directory, an unreadable file and a dangling link named like inputs, duplicates within and
across files. The run ends normally, every good drawing is written once, every
bad line and file is reported with its reason, and the dataset verifies."""
from __future__ import annotations

import collections
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dataset_manifest as dm
import tfrecord_schema as schema
from hostile_lines import many_points, record
from pipeline_helpers import read_split
from special_files import SPECIAL_FILES, make_special_files

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
CLASSES = ["cat", "cup", "moon", "ladder"]


def _lines(sample: Path, word: str) -> list[bytes]:
    return (sample / ("%s.ndjson" % word)).read_bytes().splitlines()


def _build(sample: Path, folder: Path) -> tuple[dict, dict, dict]:
    """Writes the input; returns good key_id -> word, expected (file, line) ->
    reason, and expected damaged file name -> reason."""
    folder.mkdir()
    cat, cup, moon, ladder = (_lines(sample, w) for w in CLASSES)
    good = {}
    for word, lines in zip(CLASSES, (cat, cup, moon, ladder)):
        good.update({json.loads(l)["key_id"]: word for l in lines})
    bad = {}
    # Windows line endings and a byte-order mark; a copy of cat's first drawing.
    (folder / "cat.ndjson").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(cat + cat[:1]) + b"\r\n")
    bad[("cat.ndjson", len(cat) + 1)] = "duplicate"
    # No trailing newline; the last line carries NUL bytes in a string.
    cup_extra = record(word="cup", key_id="nul-1", countrycode="U\x00S")
    (folder / "cup.ndjson").write_bytes(b"\n".join(cup + [cup_extra]))
    good["nul-1"] = "cup"
    # moon split over a gzip file cut in the middle of its stream (its first
    # lines are read; the cut ones are lost) and a plain file that repeats
    # one of them: a copy across two files.
    packed = gzip.compress(b"\n".join(moon[:10]) + b"\n")
    (folder / "moon.ndjson.gz").write_bytes(packed[:len(packed) // 2])
    (folder / "moon.ndjson").write_bytes(b"\n".join(moon[10:] + moon[10:11]) + b"\n")
    bad[("moon.ndjson", len(moon) - 10 + 1)] = "duplicate"
    # ladder in a gzip file whose middle bytes are corrupt: what is before
    # the corruption may be read; nothing after it.
    packed = bytearray(gzip.compress(b"\n".join(ladder) + b"\n"))
    packed[len(packed) // 2: len(packed) // 2 + 64] = bytes(64)
    (folder / "ladder.ndjson.gz").write_bytes(bytes(packed))
    # A file of lines that are each wrong in one way.
    junk = [
        (b"\x00\x00\x00", "invalid_json"),
        (record(word="cat", key_id="u-1")[:30] + b"\xff\xfe" + record()[30:], "invalid_utf8"),
        (record(key_id="big", pad="x" * 5_000_000), "too_many_bytes"),
        (many_points(6_500_000), "too_many_bytes"),
        (record(word="cat", key_id="big-pts", drawing=[[list(range(20_000)), list(range(20_000))]]),
         "too_many_points"),
        (b"", "blank_line"),
    ]
    (folder / "junk.ndjson").write_bytes(b"\n".join(l for l, _ in junk) + b"\n")
    bad.update({("junk.ndjson", i + 1): r for i, (_, r) in enumerate(junk) if r != "blank_line"})
    (folder / "empty.ndjson").write_bytes(b"")
    (folder / "x.ndjson").mkdir()
    # A file that cannot be read even by root (chmod does not stop root):
    # reading /proc/self/mem at offset 0 is an I/O error.
    os.symlink("/proc/self/mem", folder / "gone.ndjson")
    # A link whose target was removed: listed by no filesystem, still reported.
    os.symlink(folder / "removed.ndjson", folder / "dangling.ndjson")
    damaged = {"moon.ndjson.gz": "truncated_gzip", "ladder.ndjson.gz": "corrupt_gzip",
               "x.ndjson": "is_a_directory", "gone.ndjson": "unreadable", "dangling.ndjson": "unreadable"}
    return good, bad, damaged


@pytest.mark.slow
def test_damaged_and_odd_files_through_the_command(tmp_path, real_sample):
    import tensorflow as tf

    folder = tmp_path / "in"
    good, bad, damaged = _build(real_sample, folder)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--input=%s,%s" % (folder, folder / "x.ndjson"), "--output=%s" % out,
         "--train_observations_per_class=15", "--eval_observations_per_class=15", "--output_shards=2",
         "--skip_transform", "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    stats = json.loads((out / schema.STATS_FILE).read_text())
    assert {Path(p).name: r for p, r in stats["damaged_files"].items()} == damaged
    for name in damaged:
        assert name in proc.stdout

    written = collections.Counter()
    for split in schema.SPLITS:
        for r in read_split(tf, out, split):
            key_id = schema.key_id_of(r[schema.KEY_ID][0], r[schema.KEY_ID_TEXT][0])
            written[key_id] += 1
            assert good[key_id] == r[schema.WORD][0].decode()
            assert np.isfinite(r[schema.INK]).all()
    assert max(written.values()) == 1
    # Every good drawing of an undamaged file is written; of a damaged file,
    # only drawings of lines before the damage.
    moon_kept = {k for k in written if good[k] == "moon"}
    assert {k for k, w in good.items() if w in ("cat", "cup")} <= set(written)
    assert len(moon_kept) >= len(_lines(real_sample, "moon")) - 10
    ladder = sum(1 for k in written if good[k] == "ladder")
    assert stats["classes"].get("ladder", {"read": 0})["read"] == ladder

    rejects = [json.loads(l) for p in sorted(out.glob("rejects-*.ndjson"))
               for l in p.read_text(encoding="utf-8").splitlines()]
    assert {(Path(r["file"]).name, r["line"]): r["reason"] for r in rejects} == bad
    assert (out / schema.CLASSES_FILE).read_text().splitlines() == sorted({good[k] for k in written})
    t = stats["totals"]
    assert t["read"] == sum(t["selected"].values()) + t["unselected"] + t["filtered"] + sum(
        t["rejected"].values())
    assert t["read"] == len(written) + len(bad) + 1  # the blank line: counted, not written
    assert {Path(p).name: n for p, n in stats["rejects_left_out"].items()} == {"junk.ndjson": 1}
    assert dm.verify(str(out)) is not None


# Runs argv[1:] and prints the largest peak resident memory of its children, in KiB.
PEAK_OF_CHILD = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


PIPELINE = [sys.executable, "-m", "pipeline.run"]


def _command(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """A command in a process group of its own, killed whole (a test
    failure) if it has not ended after ``timeout`` seconds."""
    proc = subprocess.Popen(argv, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the run had not ended after %d s" % timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_fifos_devices_and_a_directory_reached_by_a_glob_end_the_run_promptly(tmp_path):
    """A FIFO would wait for a writer forever, /dev/zero and /dev/urandom never
    end: each is a damaged file with its reason, found before it is opened.
    The drawings at the edge of float32 are rasterised without a warning."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cat.ndjson").write_bytes((SAMPLE / "cat.ndjson").read_bytes())
    make_special_files(folder)
    (folder / "edge.ndjson").write_bytes(
        record(word="cat", key_id="edge", drawing=[[[0, 3.3e38, 1e38], [0, 1, 2]]]) + b"\n"
        + record(word="cat", key_id="over", drawing=[[[-3e38, 3e38], [0, 1]]]) + b"\n")
    out = tmp_path / "out"
    proc = _command(PIPELINE + ["--input=%s" % (folder / "*.ndjson"), "--output=%s" % out, "--raster",
                                "--skip_transform", "--train_observations_per_class=30",
                                "--eval_observations_per_class=0", "--output_shards=1"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / schema.STATS_FILE).read_text())
    assert {Path(p).name: r for p, r in stats["damaged_files"].items()} == {
        name: reason for name, (reason, _) in SPECIAL_FILES.items()}
    assert "RuntimeWarning" not in proc.stderr + proc.stdout and "overflow" not in proc.stderr
    assert stats["totals"]["selected"]["train"] == 26 and stats["totals"]["rejected"] == {"ink_out_of_range": 1}
    assert not (out / dm.LOCK_FILE).exists() and dm.verify(str(out)) is not None


@pytest.mark.slow
def test_a_tiny_gzip_of_millions_of_bad_lines_is_read_in_bounded_memory_and_time(tmp_path):
    """A 60 KB gzip file: 1M blank lines, 200,000 lines that are not JSON and
    20,000 copies of one drawing. The rejects are streamed to their file (the
    first 1,000 of the file, copies past the first 10 only counted), so the
    run's memory does not grow with them (before: 982 MiB and 147 s; now
    about 235 MiB and 13 s on the 2-core build machine)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cat.ndjson").write_bytes((SAMPLE / "cat.ndjson").read_bytes())
    drawing = (SAMPLE / "cat.ndjson").read_bytes().splitlines()[0]
    with gzip.open(folder / "junk.ndjson.gz", "wb") as f:
        f.write(b"\n" * 1_000_000 + b"not json\n" * 200_000 + (drawing + b"\n") * 20_000)
    assert (folder / "junk.ndjson.gz").stat().st_size < 100_000
    out = tmp_path / "out"
    # Through a small parent, which reports its child's peak: Linux charges a
    # child forked straight from this (large) test process with its memory.
    proc = _command([sys.executable, "-c", PEAK_OF_CHILD, *PIPELINE, "--input=%s" % folder,
                     "--output=%s" % out, "--skip_transform", "--train_observations_per_class=30",
                     "--eval_observations_per_class=0", "--output_shards=1"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_kib = int(proc.stdout.split()[-1])
    assert peak_kib < 600 << 10, "peak resident memory %d MiB" % (peak_kib >> 10)

    stats = json.loads((out / schema.STATS_FILE).read_text())
    junk = str(folder / "junk.ndjson.gz")
    assert stats["totals"]["rejected"] == {"blank_line": 1_000_000, "invalid_json": 200_000, "duplicate": 20_000}
    assert stats["rejects_left_out"] == {junk: 1_000_000 + 200_000 - 1000 + 20_000 - 10}
    rejects = [json.loads(l) for l in (out / "rejects-00000-of-00001.ndjson").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects if r["reason"] == "invalid_json"] == [
        (1_000_000 + i, "invalid_json") for i in range(1, 1001)]
    assert [r["line"] for r in rejects if r["reason"] == "duplicate"] == list(range(1_200_001, 1_200_011))
