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
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dataset_manifest as dm
import tfrecord_schema as schema
from hostile_lines import many_points, record
from pipeline_helpers import read_split

ROOT = Path(__file__).resolve().parent.parent
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
    bad.update({("junk.ndjson", i + 1): r for i, (_, r) in enumerate(junk)})
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
    assert t["read"] == len(written) + len(bad)
    assert dm.verify(str(out)) is not None
