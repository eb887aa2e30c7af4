"""pipeline.render: PNG mosaics of ndjson drawings and of pipeline TFRecords."""
from __future__ import annotations

import collections
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tfrecord_schema as schema
from pipeline.parse import parse_line
from pipeline.drawing_readers import Candidate, ink_to_strokes, is_ndjson, read_ndjson, read_tfrecords
from pipeline.render import main, pick

from sample_paths import BUNDLED_SAMPLE as SAMPLE
from sample_paths import REPO, REAL_SAMPLE


def sample_lines(limit_per_class: int = 25) -> list[str]:
    lines = []
    for path in sorted(SAMPLE.glob("*.ndjson")):
        lines += path.read_text().splitlines()[:limit_per_class]
    return lines


def cells(png: Path, rows: int, cols: int, cell: int) -> list[np.ndarray]:
    pixels = np.asarray(Image.open(png).convert("L"))
    return [pixels[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
            for r in range(rows) for c in range(cols)]


def assert_mosaic(png: Path, rows: int, cols: int, cell: int) -> None:
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (cols * cell, rows * cell)
    for pixels in cells(png, rows, cols, cell):
        # Strokes in the drawing area, a caption in the strip below it.
        assert (pixels[:cell * 3 // 4] < 100).sum() > cell
        assert (pixels[-cell // 8:] < 100).sum() > 10


def test_renders_the_bundled_sample(tmp_path, capsys):
    out = tmp_path / "sample.png"
    assert main(["--input", str(SAMPLE), "--output", str(out), "--rows", "3",
                 "--cols", "4", "--cell", "96"]) == 0
    assert_mosaic(out, 3, 4, 96)
    assert "12 drawings picked from 500 in 20 file(s)" in capsys.readouterr().out


def test_renders_the_real_sample_with_a_glob(tmp_path):
    out = tmp_path / "shared.png"
    assert main(["--input", str(REAL_SAMPLE / "*.ndjson"), "--output", str(out),
                 "--rows", "2", "--cols", "5", "--cell", "64",
                 "--recognized_only"]) == 0
    assert_mosaic(out, 2, 5, 64)


def test_gzipped_raw_format_ndjson(tmp_path):
    # The raw format has float coordinates and a third (time) array per stroke.
    path = tmp_path / "cat.ndjson.gz"
    with gzip.open(path, "wt") as f:
        for line in (SAMPLE / "cat.ndjson").read_text().splitlines()[:3]:
            record = json.loads(line)
            record["drawing"] = [[[v * 3.7 - 20 for v in s[0]],
                                  [v * 2.1 + 0.5 for v in s[1]],
                                  list(range(len(s[0])))] for s in record["drawing"]]
            f.write(json.dumps(record) + "\n")
    out = tmp_path / "raw.png"
    assert main(["--input", str(path), "--output", str(out), "--rows", "1",
                 "--cols", "3", "--cell", "64"]) == 0
    assert_mosaic(out, 1, 3, 64)


def test_bad_lines_are_counted_not_fatal(tmp_path, capsys):
    path = tmp_path / "mixed.ndjson"
    good = (SAMPLE / "moon.ndjson").read_text().splitlines()[0]
    path.write_text("\n".join([
        good, "{not json", json.dumps({"word": "moon", "drawing": []}),
        json.dumps({"word": "moon", "drawing": [[[1, 2], [3]]]}),
        json.dumps({"drawing": [[[1, 2], [3, 4]]]}), ""]))
    out = tmp_path / "mixed.png"
    assert main(["--input", str(path), "--output", str(out), "--rows", "1",
                 "--cols", "1", "--cell", "64"]) == 0
    printed = capsys.readouterr().out
    assert "1 drawings picked from 1" in printed
    for reason in ("invalid_json", "empty_drawing", "xy_length_mismatch", "missing_word"):
        assert "1 %s" % reason in printed


def test_class_filter_recognized_only_and_seed():
    rejects = collections.Counter()
    candidates = [c for path in sorted(SAMPLE.glob("*.ndjson"))
                  for c in read_ndjson(path, rejects, recognized_only=True)]
    unrecognized = sum(not json.loads(line)["recognized"] for line in sample_lines())
    assert rejects == {"not_recognized": unrecognized}
    assert len(candidates) == 500 - unrecognized

    picked, seen = pick(candidates, 10, seed=1, classes={"cat", "moon"})
    assert {d.word for d in picked} <= {"cat", "moon"} and len(picked) == 10
    assert seen == sum(c.word in ("cat", "moon") for c in candidates)

    def words(seed):
        return [(d.word, d.strokes[0][0].tolist()) for d in pick(candidates, 20, seed)[0]]
    assert words(5) == words(5)
    assert words(5) != words(6)


def test_reservoir_is_roughly_uniform():
    candidates = [Candidate(str(i % 10), list) for i in range(1000)]
    counts = collections.Counter()
    for seed in range(200):
        counts.update(d.word for d in pick(candidates, 10, seed)[0])
    assert min(counts.values()) > 120 and max(counts.values()) < 280


def test_no_match_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "nothing-*.ndjson"),
                 "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no file matches --input" in err

    assert main(["--input", str(SAMPLE), "--classes", "dragon",
                 "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no drawing of class dragon" in err
    assert not (tmp_path / "x.png").exists()


def test_ndjson_rendering_does_not_import_tensorflow(tmp_path):
    code = ("import sys; from pipeline.render import main; "
            "rc = main(['--input', %r, '--output', %r, '--rows', '1', '--cols', '2']); "
            "assert rc == 0 and 'tensorflow' not in sys.modules"
            % (str(SAMPLE / "cup.ndjson"), str(tmp_path / "cup.png")))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   capture_output=True)


# --- TFRecords ---------------------------------------------------------------

def normalised_points(line: str) -> list[np.ndarray]:
    """The drawing's absolute points after parse_line's scaling, per stroke."""
    strokes = json.loads(line)["drawing"]
    xy = np.concatenate([np.array(s[:2], dtype=np.float64).T for s in strokes])
    lower, upper = xy.min(axis=0), xy.max(axis=0)
    scale = np.where(upper - lower == 0, 1, upper - lower)
    xy = (xy - lower) / scale
    bounds = np.cumsum([0] + [len(s[0]) for s in strokes])
    return [xy[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def test_ink_to_strokes_reproduces_the_drawing_up_to_translation():
    compared = 0
    for line in sample_lines(5):
        original = normalised_points(line)
        if len(original[0]) < 2:
            continue  # the first point's end_of_stroke is lost with it
        ink, _ = parse_line(line)
        decoded = ink_to_strokes(ink)
        assert [len(x) for x, _ in decoded] == [len(s) for s in original]
        got = np.concatenate([np.stack(s, axis=1) for s in decoded])
        want = np.concatenate(original)
        np.testing.assert_allclose(got, want - want[0], atol=1e-5)
        compared += 1
    assert compared > 90


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def write_records(tf, path: Path, lines: list[str], classes: list[str],
                  with_word: bool) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for line in lines:
            ink, word = parse_line(line)
            feature = {
                schema.INK: tf.train.Feature(
                    float_list=tf.train.FloatList(value=ink.ravel())),
                schema.SHAPE: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=ink.shape)),
                schema.CLASS_INDEX: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[classes.index(word)])),
            }
            if with_word:
                feature[schema.WORD] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[word.encode()]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def records(tf, tmp_path_factory):
    """Two training shards with the word feature, one eval shard without it."""
    out = tmp_path_factory.mktemp("records")
    lines = sample_lines(6)
    classes = sorted({json.loads(line)["word"] for line in lines})
    (out / schema.CLASSES_FILE).write_text("\n".join(classes) + "\n")
    write_records(tf, out / schema.shard_name(schema.TRAIN, 0, 2), lines[0::3],
                  classes, with_word=True)
    write_records(tf, out / schema.shard_name(schema.TRAIN, 1, 2), lines[1::3],
                  classes, with_word=True)
    write_records(tf, out / schema.shard_name(schema.EVAL, 0, 1), lines[2::3],
                  classes, with_word=False)
    return out, lines


def test_renders_tfrecords(records, tmp_path, capsys):
    out_dir, lines = records
    png = tmp_path / "records.png"
    pattern = str(out_dir / (schema.SPLIT_PREFIX[schema.TRAIN] + "-*"))
    assert main(["--input", pattern, "--output", str(png), "--rows", "2",
                 "--cols", "3", "--cell", "80", "--classes", "cat,moon"]) == 0
    assert_mosaic(png, 2, 3, 80)
    in_training = [line for i, line in enumerate(lines) if i % 3 != 2
                   and json.loads(line)["word"] in ("cat", "moon")]
    assert "6 drawings picked from %d in 2 file(s)" % len(in_training) \
        in capsys.readouterr().out


def test_a_dataset_folder_is_drawn_from_its_shards_not_its_rejects(records, tmp_path, capsys):
    out_dir, lines = records
    dataset = tmp_path / "dataset"
    shutil.copytree(out_dir, dataset)
    (dataset / schema.STATS_FILE).write_text("{}")
    (dataset / "rejects-00000-of-00001.ndjson").write_text(
        json.dumps({"file": "x.ndjson", "line": 1, "reason": "invalid_json", "text": "{"}) + "\n")
    assert main(["--input", str(dataset), "--output", str(tmp_path / "m.png"), "--rows", "1",
                 "--cols", "2", "--cell", "64"]) == 0
    assert "from %d in 3 file(s)" % len(lines) in capsys.readouterr().out


def test_tfrecord_drawings_match_their_ndjson(records):
    out_dir, lines = records
    by_key = {}
    for line in lines[2::3]:
        ink, word = parse_line(line)
        by_key[ink.tobytes()] = word
    rejects = collections.Counter()
    decoded = [c.to_drawing() for c in read_tfrecords(
        out_dir / schema.shard_name(schema.EVAL, 0, 1), rejects, False)]
    assert not rejects and len(decoded) == len(by_key)
    originals = [normalised_points(line) for line in lines[2::3]]
    for drawing, original, line in zip(decoded, originals, lines[2::3]):
        assert drawing.word == json.loads(line)["word"]  # via class_index
        got = np.concatenate([np.stack(s, axis=1) for s in drawing.strokes])
        want = np.concatenate(original)
        np.testing.assert_allclose(got, want - want[0], atol=1e-5)


def test_tfrecords_without_word_or_classes_file_are_rejected(tf, records, tmp_path,
                                                             capsys):
    out_dir, _ = records
    lonely = tmp_path / "eval.tfrecord-00000-of-00001"
    lonely.write_bytes((out_dir / lonely.name).read_bytes())
    assert main(["--input", str(lonely), "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no word, and class_index not in" in err


def test_corrupt_tfrecord_is_a_clear_error(tf, tmp_path, capsys):
    path = tmp_path / "training.tfrecord-00000-of-00001"
    path.write_bytes(b"\x00" * 40)
    assert main(["--input", str(path), "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "as TFRecords" in err


def test_directory_of_records_means_all_their_shards(records, tmp_path, capsys):
    out_dir, lines = records
    png = tmp_path / "all.png"
    assert main(["--input", str(out_dir), "--output", str(png), "--rows", "1",
                 "--cols", "2", "--cell", "64", "--seed", "2"]) == 0
    assert_mosaic(png, 1, 2, 64)
    assert "picked from %d in 3 file(s)" % len(lines) in capsys.readouterr().out


def test_format_is_sniffed_when_the_name_does_not_say(records, tmp_path):
    out_dir, _ = records
    assert not is_ndjson(out_dir / schema.shard_name(schema.EVAL, 0, 1))
    # A TFRecord whose first record is 123 bytes long starts with "{".
    odd = tmp_path / "odd-record"
    odd.write_bytes(b"{" + b"\x00" * 7 + b"\x12" * 4 + b"x" * 123)
    assert not is_ndjson(odd)
    unnamed = tmp_path / "drawings"
    unnamed.write_bytes((SAMPLE / "key.ndjson").read_bytes())
    assert is_ndjson(unnamed)


def test_hostile_lines_are_skipped_by_reason_as_in_the_pipeline(tmp_path, capsys):
    from hostile_lines import HOSTILE, record
    good = [l.encode() for l in (SAMPLE / "cat.ndjson").read_text().splitlines()[:3]]
    (tmp_path / "mixed.ndjson").write_bytes(b"\n".join([l for l, _ in HOSTILE] + good) + b"\n")
    (tmp_path / "cat.ndjson").write_bytes(b"\n".join([record(word="zebra"), good[0]]) + b"\n")
    out = tmp_path / "hostile.png"
    assert main(["--input", str(tmp_path), "--output", str(out), "--rows", "1", "--cols", "4",
                 "--cell", "64", "--max_points", "1000"]) == 0
    assert_mosaic(out, 1, 4, 64)
    printed = capsys.readouterr().out
    assert "4 drawings picked from 4 in 2 file(s)" in printed
    expected = collections.Counter(reason for _, reason in HOSTILE)
    expected["wrong_class"] += 1
    skipped = printed.strip().split("; skipped ")[1].split(", ")
    assert {reason: int(n) for n, reason in (item.split(" ") for item in skipped)} == expected
