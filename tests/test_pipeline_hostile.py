"""A pipeline run over real drawings mixed with every hostile line: it ends
normally and accounts for every line."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

import tfrecord_schema as schema
from hostile_lines import HOSTILE, record
from pipeline import run as run_lib
from pipeline.parse import parse_line
from pipeline_helpers import read_split, real_files

# Lines appended to a copy of the real cat.ndjson, with their reason (None: a good drawing).
CAT_EXTRA = [
    (record(word="zebra", key_id="z-1"), "wrong_class"),
    (record(word="Cat", key_id="z-2"), "wrong_class"),
    (record(word="cat ", key_id="z-3"), "bad_word"),
    (record(key_id="abc-1"), None),
    (record(key_id="0042"), None),
    (record(key_id="18446744073709551616"), None),
]
TOO_LONG = record(pad="x" * 400_000)


@pytest.mark.slow
def test_real_drawings_mixed_with_every_hostile_line(tmp_path, real_sample):
    import tensorflow as tf

    src = tmp_path / "in"
    src.mkdir()
    real = real_files(real_sample, 3) + [real_sample / "cat.ndjson"]
    good: dict[str, str] = {}  # key_id -> line
    for path in real:
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            good[json.loads(line)["key_id"]] = line
        if path.name == "cat.ndjson":
            text += b"\n".join(line for line, _ in CAT_EXTRA).decode() + "\n"
        (src / path.name).write_text(text, encoding="utf-8")
    for line, reason in CAT_EXTRA:
        if reason is None:
            good[json.loads(line)["key_id"]] = line.decode()
    hostile = [(line, reason) for line, reason in HOSTILE] + [(TOO_LONG, "too_many_bytes"),
                                                               (b"   ", "blank_line")]
    (src / "hostile.ndjson").write_bytes(b"\n".join(line for line, _ in hostile) + b"\n")

    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % src, "--output=%s" % out, "--skip_transform",
                         "--train_observations_per_class=20", "--eval_observations_per_class=10",
                         "--output_shards=2", "--max_points=1000", "--max_bytes=300000"])

    # Every good drawing written exactly once, its ink finite and the tutorial's.
    written = collections.Counter()
    for split in schema.SPLITS:
        for r in read_split(tf, out, split):
            key_id = schema.key_id_of(r[schema.KEY_ID][0], r[schema.KEY_ID_TEXT][0])
            written[key_id] += 1
            ink = r[schema.INK].reshape(-1, 3)
            assert np.isfinite(ink).all()
            assert ink.tobytes() == parse_line(good[key_id])[0].tobytes()
            assert r[schema.WORD][0].decode() == json.loads(good[key_id])["word"]
    assert written == {k: 1 for k in good}

    # Every bad line in the rejects, where it was, with its reason.
    rejects = [json.loads(l) for p in sorted(out.glob("rejects-*.ndjson"))
               for l in p.read_text(encoding="utf-8").splitlines()]
    got = {(Path(r["file"]).name, r["line"]): r["reason"] for r in rejects}
    expected = {("hostile.ndjson", i + 1): reason for i, (_, reason) in enumerate(hostile)}
    blank = expected.pop(("hostile.ndjson", len(hostile)))  # counted, not written
    cat_lines = len((real_sample / "cat.ndjson").read_text().splitlines())
    expected.update({("cat.ndjson", cat_lines + i + 1): reason
                     for i, (_, reason) in enumerate(CAT_EXTRA) if reason})
    assert got == expected and len(rejects) == len(expected)

    # The classes are exactly the input's; the stats reconcile.
    words = sorted({json.loads(line)["word"] for line in good.values()})
    assert (out / schema.CLASSES_FILE).read_text(encoding="utf-8").splitlines() == words
    assert json.loads((out / schema.STATS_FILE).read_text()) == stats
    assert sorted(stats["classes"]) == words
    t = stats["totals"]
    assert t["read"] == len(good) + len(expected) + 1
    assert t["rejected"] == dict(collections.Counter([*expected.values(), blank]))
    assert sum(t["selected"].values()) == len(good) and t["unselected"] == t["filtered"] == 0
    for word, c in stats["classes"].items():
        assert c["read"] == sum(c["selected"].values()) + sum(c["rejected"].values()), word
    assert stats["classes"]["cat"]["rejected"]["wrong_class"] == 2
