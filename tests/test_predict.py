"""trainer.predict on hostile input: one record per line, in order, never a crash.

A stand-in model (a fixed score per class) isolates the line handling from
TensorFlow; tests/test_trainer_task.py runs the command on a real export."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from hostile_lines import HOSTILE, SQUARE, deep, many_points, record
from ndjson_format import Limits
from trainer import predict
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
