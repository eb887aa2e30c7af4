"""The rejects file is a sample of each file's bad lines, and the counts stay
exact: the first REJECTS_PER_FILE lines rejected while reading a file, in
order, however the file is cut into byte ranges; blank lines counted only;
of the copies of one drawing held back in a unit, the first
COPIES_PER_DRAWING written. ``rejects_left_out`` holds the difference."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import run as run_lib
from pipeline import sources
from pipeline import stats as stats_lib

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
FLAGS = ["--train_observations_per_class=30", "--eval_observations_per_class=0", "--output_shards=1",
         "--skip_transform"]


def _rejects(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "rejects-00000-of-00001.ndjson").read_text().splitlines()]


def _reconciles(stats: dict) -> None:
    t = stats["totals"]
    assert t["read"] == sum(t["selected"].values()) + t["unselected"] + t["filtered"] + sum(t["rejected"].values())


@pytest.mark.slow
def test_a_files_first_rejects_are_kept_across_its_byte_ranges(tmp_path, monkeypatch):
    monkeypatch.setattr(stats_lib, "REJECTS_PER_FILE", 3)
    monkeypatch.setattr(sources, "MIN_UNIT_BYTES", 3000)
    monkeypatch.setattr(sources, "UNITS_PER_JOB", 1000)
    folder = tmp_path / "in"
    folder.mkdir()
    lines = []
    for i, line in enumerate((SAMPLE / "cat.ndjson").read_bytes().splitlines()):
        lines += [line, b"", b"not json %d" % i]
    path = folder / "cat.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert len(sources.plan_units([str(path)], [path.stat().st_size])) > 4
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % folder, "--output=%s" % out, *FLAGS])
    assert [(r["line"], r["reason"], r["text"]) for r in _rejects(out)] == [
        (3 * i + 3, "invalid_json", "not json %d" % i) for i in range(3)]
    assert stats["classes"]["cat"]["rejected"] == {"blank_line": 25, "invalid_json": 25}
    assert stats["rejects_left_out"] == {str(path): 25 + 25 - 3}
    _reconciles(stats)


@pytest.mark.slow
def test_copies_of_a_drawing_are_held_once_a_unit_and_the_first_few_written(tmp_path, monkeypatch):
    """a.ndjson.gz holds the cat drawings and 5 more copies of the first one,
    b.ndjson.gz (another unit) 4 more: 9 duplicates. Of the copies a unit
    holds back, the first 2 are written and the rest counted."""
    monkeypatch.setattr(stats_lib, "COPIES_PER_DRAWING", 2)
    monkeypatch.setattr(sources, "MIN_UNIT_BYTES", 1000)
    monkeypatch.setattr(sources, "UNITS_PER_JOB", 1000)
    folder = tmp_path / "in"
    folder.mkdir()
    cat = (SAMPLE / "cat.ndjson").read_bytes().splitlines()
    (folder / "a.ndjson.gz").write_bytes(gzip.compress(b"\n".join(cat + cat[:1] * 5) + b"\n"))
    (folder / "b.ndjson.gz").write_bytes(gzip.compress(b"\n".join(cat[:1] * 4) + b"\n"))
    files = [str(folder / "a.ndjson.gz"), str(folder / "b.ndjson.gz")]
    assert len(sources.plan_units(files, [Path(f).stat().st_size for f in files])) == 2
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % folder, "--output=%s" % out, *FLAGS])
    assert stats["classes"]["cat"]["rejected"] == {"duplicate": 9}
    assert stats["classes"]["cat"]["selected"]["train"] == 25
    # b's first copy is dropped at planning (a's comes first); each unit
    # writes 2 of the copies it held back.
    assert sorted((Path(r["file"]).name, r["line"], r["reason"]) for r in _rejects(out)) == [
        ("a.ndjson.gz", 26, "duplicate"), ("a.ndjson.gz", 27, "duplicate"),
        ("b.ndjson.gz", 1, "duplicate"), ("b.ndjson.gz", 2, "duplicate"), ("b.ndjson.gz", 3, "duplicate")]
    assert stats["rejects_left_out"] == {files[0]: 3, files[1]: 1}
    _reconciles(stats)


def test_a_rejected_lines_text_is_cut_so_a_files_rejects_stay_small():
    """1,000 rejects a file times 10,000 bytes of text as written: at most
    about 10 MB of rejects per input file, however long its bad lines are (up
    to --max_bytes) and however much JSON's escapes expand them."""
    from pipeline.rejects import reject_record

    record = reject_record("invalid_json", b"x" * 500_000 + b"\n")
    assert len(record["text"]) == 10_000 and record["truncated"] is True
    assert reject_record("invalid_json", b"short\r\n") == {"reason": "invalid_json", "text": "short"}
    exact = reject_record("invalid_json", b"y" * 10_000)
    assert len(exact["text"]) == 10_000 and "truncated" not in exact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\x01", b"\xff", b"\"", b"\\", b"a", "\u00e9".encode(), "\U0001f600".encode(),
                                 b"\xe2\x80\xa8", b"\t"]), min_size=1, max_size=40),
       st.integers(1, 30_000))
def test_a_rejected_lines_text_as_written_is_at_most_10000_bytes(pieces, repeat):
    import orjson

    from pipeline.rejects import reject_record

    line = b"".join(pieces) * (repeat // len(pieces) + 1)
    record = reject_record("invalid_json", line)
    written = len(orjson.dumps(record["text"])) - 2
    assert written <= 10_000
    text = line.decode("utf-8", errors="replace")
    assert text.startswith(record["text"])
    assert record.get("truncated", False) == (len(record["text"]) < len(text))
    if record.get("truncated"):  # the longest prefix that fits: one more character would not
        assert len(orjson.dumps(text[:len(record["text"]) + 1])) - 2 > 10_000


@pytest.mark.slow
def test_a_file_of_long_escaped_bad_lines_gives_at_most_about_10_mb_of_rejects(tmp_path):
    """1,100 lines of 12,000 control bytes: JSON writes each as 6 bytes, so
    a cut by characters gave 60 MB; by bytes as written, about 10 MB."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cat.ndjson").write_bytes((SAMPLE / "cat.ndjson").read_bytes() + (b"\x01" * 12_000 + b"\n") * 1_100)
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % folder, "--output=%s" % out, *FLAGS])
    rejects = out / "rejects-00000-of-00001.ndjson"
    assert len(_rejects(out)) == stats_lib.REJECTS_PER_FILE == 1_000
    assert rejects.stat().st_size <= 1_000 * (10_000 + 200 + len(str(folder / "cat.ndjson")))
    assert all(r["truncated"] and set(r["text"]) == {"\x01"} for r in _rejects(out))
