"""The in-graph normalisation of the serving signature equals parse_line."""
import json

import numpy as np
import pytest

from pipeline.parse import parse_line
from trainer.preprocess import normalize_strokes
from trainer_helpers import REAL_SAMPLE


def raw_batch(records: list[dict]):
    """Padded absolute x, y, stroke_end and point counts, as the signature takes them."""
    points = []
    for r in records:
        xs = [v for s in r["drawing"] for v in s[0]]
        ys = [v for s in r["drawing"] for v in s[1]]
        ends = [float(i == len(s[0]) - 1) for s in r["drawing"] for i in range(len(s[0]))]
        points.append((xs, ys, ends))
    n = max(len(p[0]) for p in points)
    batch = np.zeros((3, len(records), n), np.float32)
    for i, p in enumerate(points):
        for c in range(3):
            batch[c, i, :len(p[0])] = p[c]
    return batch, np.array([len(p[0]) for p in points], np.int32)


def all_lines() -> list[str]:
    return [line for f in sorted(REAL_SAMPLE.glob("*.ndjson")) for line in f.read_text().splitlines()]


def assert_matches_parse_line(lines: list[str], batch_size: int = 500) -> int:
    checked = 0
    for start in range(0, len(lines), batch_size):
        chunk = lines[start:start + batch_size]
        (x, y, ends), lengths = raw_batch([json.loads(line) for line in chunk])
        ink, ink_lengths = normalize_strokes(x, y, ends, lengths)
        ink, ink_lengths = ink.numpy(), ink_lengths.numpy()
        for i, line in enumerate(chunk):
            expected, _ = parse_line(line)
            assert ink_lengths[i] == len(expected)
            np.testing.assert_allclose(ink[i, :len(expected)], expected, rtol=0, atol=0)
            assert not ink[i, len(expected):].any(), "padding must stay zero"
            checked += 1
    return checked


def test_normalisation_equals_parse_line_on_every_real_drawing():
    lines = all_lines()
    assert assert_matches_parse_line(lines) == len(lines)
    assert len(lines) == 8600


def test_float_coordinates_and_flat_strokes():
    drawings = [
        {"word": "raw", "drawing": [[[10.5, 20.25, 30.125], [1.5, 1.5, 1.5], [0, 5, 9]],
                                    [[3.75, 4.0], [2.0, 7.5], [11, 12]]]},
        {"word": "vertical", "drawing": [[[7, 7, 7], [0, 50, 100]]]},
        {"word": "dot-and-line", "drawing": [[[5], [5]], [[5, 6], [5, 5]]]},
    ]
    assert_matches_parse_line([json.dumps(d) for d in drawings])


def test_single_point_drawing_gives_empty_ink():
    (x, y, ends), lengths = raw_batch([{"drawing": [[[3], [4]]]}, {"drawing": [[[1, 2], [3, 4]]]}])
    ink, ink_lengths = normalize_strokes(x, y, ends, lengths)
    assert ink_lengths.numpy().tolist() == [0, 1]
    assert not ink.numpy()[0].any()
    assert ink.numpy()[1, 0].tolist() == pytest.approx([1.0, 1.0, 1.0])
