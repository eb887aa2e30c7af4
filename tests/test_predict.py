"""trainer.predict on hostile input: one record per line, in order, never a crash.

A stand-in model (a fixed score per class) isolates the line handling from
TensorFlow; tests/test_trainer_task.py runs the command on a real export."""
from __future__ import annotations

import io
import json
import os
import re
import tracemalloc

import numpy as np
import pytest

from hostile_lines import HOSTILE, SQUARE, deep, many_points, record
from ndjson_format import REASONS, Limits
from pipeline.parse import normalize
from trainer import predict
from trainer.errors import TrainerError
from trainer.predict import drawing_points, predict_lines, read_lines

CLASSES = ["cat", "dog", "moon"]


class FakePredictor:
    """Scores a drawing by its number of points, so answers are checkable."""

    classes = CLASSES

    def __init__(self, fail_on_call: int | None = None):
        self.calls = 0
        self.fail_on_call = fail_on_call

    def probabilities(self, drawings):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("model failed")
        for x, y, ends in drawings:
            assert x.dtype == np.float32 and np.isfinite(x).all() and np.isfinite(y).all()
            assert len(x) == len(y) == len(ends) >= 2 and ends[-1] == 1.0
        p = np.zeros((len(drawings), len(CLASSES)), np.float32)
        for i, (x, _, _) in enumerate(drawings):
            p[i, len(x) % len(CLASSES)] = 1.0
        return p


def run(lines, **kwargs) -> tuple[list[dict], str, tuple[int, int]]:
    out, err = io.StringIO(), io.StringIO()
    counts = predict_lines(FakePredictor(), lines, top_k=1, out=out, err=err, **kwargs)
    return [json.loads(l) for l in out.getvalue().splitlines()], err.getvalue(), counts


# Reasons where predict differs from the pipeline: it needs no word and echoes metadata.
PREDICTED_HERE = {"bad_word", "missing_word", "bad_key_id", "bad_metadata"}


def test_every_hostile_line_gets_its_record_and_the_good_ones_an_answer():
    good = record(drawing=SQUARE, key_id="k-1")
    lines = [good] + [line for line, _ in HOSTILE] + [b"", b"  \n", good]
    records, err, (done, rejected) = run(lines, limits=Limits(max_points=1000))
    assert [r["line"] for r in records] == [1] + [i + 2 for i in range(len(HOSTILE))] + [len(lines)]
    for r, (_, reason) in zip(records[1:], HOSTILE):
        if reason in PREDICTED_HERE and reason != "missing_word":
            assert "top_k" in r and "error" not in r, reason
        elif reason == "missing_word":  # '{"drawing": [[1, 2]]}': a bad stroke, word or not
            assert r["error"] == "bad_stroke"
        else:
            assert r["error"] == reason and r["message"] and "top_k" not in r
    for r in (records[0], records[-1]):
        assert r["key_id"] == "k-1" and r["top_k"] == [{"class": "cat", "score": 1.0}]  # 3 points
    errors = sum("error" in r for r in records)
    assert (done, rejected) == (len(records) - errors, errors)
    assert err == "%d drawings predicted, %d lines rejected (records with \"error\")\n" % (done, rejected)


def test_the_limits_apply():
    huge = many_points(300_000)  # 3.9 MB
    records, _, _ = run([huge, record()])
    assert records[0]["error"] == "too_many_bytes" and "top_k" in records[1]
    records, _, _ = run([huge, record()], limits=Limits(max_bytes=0))
    assert records[0]["error"] == "too_many_points"
    records, _, _ = run([many_points(30)], limits=Limits(max_points=29))
    assert records[0]["error"] == "too_many_points"


def test_answers_already_computed_are_written_before_a_later_failure():
    out = io.StringIO()
    lines = [record()] * (predict.BATCH + 5)
    with pytest.raises(RuntimeError):
        predict_lines(FakePredictor(fail_on_call=2), lines, top_k=1, out=out, err=io.StringIO())
    assert len(out.getvalue().splitlines()) == predict.BATCH


def test_non_utf8_bytes_in_a_file_are_one_bad_line(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join([record(), b'{"word": "\xff\xfe", "drawing": [[[1, 2], [3, 4]]]}',
                                 deep(100_000), record()]) + b"\n")
    records, _, counts = run(read_lines(str(path)))
    assert [r.get("error") for r in records] == [None, "invalid_utf8", "invalid_json", None]
    assert counts == (2, 2)


def test_drawing_points_raises_the_reason():
    x, y, ends = drawing_points(json.loads(record()))
    assert x.tolist() == [0, 10, 10] and ends.tolist() == [0, 0, 1]
    for bad, reason in ([[1, 2]], "bad_stroke"), ([[[1, "2"], [1, 2]]], "non_numeric_coordinate"):
        with pytest.raises(ValueError, match=reason):
            drawing_points({"drawing": bad})
    with pytest.raises(ValueError, match="missing_drawing"):
        drawing_points(["not", "a", "record"])


def strict_json(text: str) -> dict:
    """json.loads refusing NaN and Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError("not JSON: %s" % constant)
    return json.loads(text, parse_constant=refuse)


class InkPredictor(FakePredictor):
    """Scores from the normalised ink, as a real model's are: NaN ink, NaN scores."""

    def probabilities(self, drawings):
        scores = []
        for x, y, ends in drawings:
            with np.errstate(all="ignore"):
                ink = normalize(np.stack([x, y, ends], axis=1))
                scores.append(np.full(len(CLASSES), ink[:, :2].sum(), np.float32))
        return np.array(scores)


class NaNPredictor(FakePredictor):
    """A damaged model: NaN scores for drawings of four points."""

    def probabilities(self, drawings):
        p = super().probabilities(drawings)
        p[[len(x) == 4 for x, _, _ in drawings]] = np.nan
        return p


OVERFLOWING = b'{"word":"cat","drawing":[[[-3e38,3e38],[0,1]]]}'


def test_a_drawing_whose_ink_overflows_gets_its_reason_and_the_output_stays_json():
    out = io.StringIO()
    counts = predict_lines(InkPredictor(), [OVERFLOWING, record()], top_k=1, out=out,
                           err=io.StringIO())
    records = [strict_json(line) for line in out.getvalue().splitlines()]
    assert records[0] == {"line": 1, "word": "cat", "error": "ink_out_of_range",
                          "message": REASONS["ink_out_of_range"]}
    assert "top_k" in records[1] and counts == (1, 1)


def test_a_drawing_the_model_cannot_score_gets_an_error_record():
    four = record(drawing=[[[0, 10, 10, 0], [0, 0, 10, 10]]], key_id="k-4")
    out, err = io.StringIO(), io.StringIO()
    counts = predict_lines(NaNPredictor(), [record(), four, record()], top_k=2, target="dog",
                           out=out, err=err)
    records = [strict_json(line) for line in out.getvalue().splitlines()]
    assert records[1] == {"line": 2, "key_id": "k-4", "word": "cat", "error": "non_finite_scores",
                          "message": predict.UNSCORED_MESSAGE}
    assert all("top_k" in r for r in (records[0], records[2])) and counts == (2, 1)
    assert err.getvalue() == "2 drawings predicted, 1 lines rejected (records with \"error\")\n"


def test_a_50_mb_line_is_never_held_whole(tmp_path):
    path = tmp_path / "long.ndjson"
    with open(path, "wb") as f:
        f.write(record() + b"\n" + record(pad="x" * 50_000_000) + b"\n" + record() + b"\n")
    tracemalloc.start()
    try:
        records, _, counts = run(read_lines(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.get("error") for r in records] == [None, "too_many_bytes", None] and counts == (2, 1)
    assert peak < 6_000_000, peak  # about 2 MB: the cap (1 MB) read and copied, not 50 MB


def test_the_byte_cap_counts_as_the_pipeline_does(tmp_path):
    fits = record(pad="x" * 100)
    path = tmp_path / "in.ndjson"
    path.write_bytes(fits + b"\n" + fits + b"x\r\n" + fits + b"\n" + fits)
    lines = list(read_lines(str(path), max_bytes=len(fits)))
    assert lines == [fits, fits + b"x", fits, fits]  # the long one cut to max_bytes + 1
    records, _, _ = run(lines, limits=Limits(max_bytes=len(fits)))
    assert [r.get("error") for r in records] == [None, "too_many_bytes", None, None]
    assert list(read_lines(str(path), max_bytes=0)) == [fits, fits + b"x\r", fits, fits]


@pytest.mark.parametrize("make, kind", [
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: p.symlink_to("/dev/zero"), "a character device"),
])
def test_only_regular_files_are_read(tmp_path, make, kind):
    path = tmp_path / "input.ndjson"
    make(path)
    with pytest.raises(TrainerError, match="^%s.*%s" % (re.escape(str(path)), kind)):
        read_lines(str(path))
    with pytest.raises(TrainerError, match="No such file"):
        read_lines(str(tmp_path / "missing.ndjson"))
