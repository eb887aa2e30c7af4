"""pipeline.raster: the notebook's 64x64 rasterisation of a drawing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import tfrecord_schema as schema
from pipeline.raster import rasterize

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def sample_drawings() -> list[list[tuple[np.ndarray, np.ndarray]]]:
    drawings = []
    for path in sorted(SAMPLE.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            drawing = json.loads(line)["drawing"]
            drawings.append([(np.array(s[0]), np.array(s[1])) for s in drawing])
    return drawings


def notebook_json_to_img(strokes, img_sz=64, lw=4):
    """The data notebook's json_to_img(maximize=True), ported to Python 3."""
    img = Image.new("L", (img_sz, img_sz))
    draw = ImageDraw.Draw(img)
    lines = np.array([np.stack([x, y])[:, i:i + 2]
                      for x, y in strokes for i in range(len(x) - 1)],
                     dtype=np.float32)
    for i in range(2):
        min_, max_ = lines[:, i, :].min() * 0.95, lines[:, i, :].max() * 1.05
        lines[:, i, :] = (lines[:, i, :] - min_) / max(max_ - min_, 1)
    for line in lines:
        draw.line(tuple(line.T.reshape((-1,)) * img_sz), fill="white", width=lw)
    return np.asarray(img)


def has_tap(strokes) -> bool:
    return any(np.ptp(x) == 0 and np.ptp(y) == 0 for x, y in strokes)


def test_real_drawings_give_non_blank_uint8_images():
    drawings = sample_drawings()
    assert len(drawings) == 500
    for strokes in drawings:
        image = rasterize(strokes, schema.IMG_SIZE, schema.IMG_LINE_WIDTH)
        assert image.shape == (64, 64) and image.dtype == np.uint8
        assert image.max() == 255 and (image > 0).sum() > 20


def test_same_pixels_as_the_notebook_where_it_has_no_tap_bug():
    compared = 0
    for strokes in sample_drawings():
        if has_tap(strokes):
            continue
        np.testing.assert_array_equal(rasterize(strokes),
                                      notebook_json_to_img(strokes))
        compared += 1
    assert compared > 400


def test_horizontal_line_lights_a_horizontal_band():
    image = rasterize([(np.array([0, 100]), np.array([50, 50]))])
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    # y: (50 - 47.5) / (52.5 - 47.5) * 64 = 32; x: 0 .. 100 / 105 * 64 = 61
    assert rows.min() >= 29 and rows.max() <= 35
    assert cols.min() == 0 and 59 <= cols.max() <= 62
    assert image[32, :60].all()


def test_vertical_line_lights_a_vertical_band():
    image = rasterize([(np.array([7.5, 7.5]), np.array([0.0, 255.0]))])
    assert np.array_equal(image.T, rasterize([(np.array([0, 255]),
                                               np.array([7.5, 7.5]))]))


def test_strokes_land_in_their_corner():
    # Two short strokes: one at the top left, one at the bottom right.
    image = rasterize([(np.array([0, 10]), np.array([0, 10])),
                       (np.array([240, 255]), np.array([240, 255]))])
    lit = np.argwhere(image > 0)
    top_left = lit[(lit < 32).all(axis=1)]
    bottom_right = lit[(lit >= 32).all(axis=1)]
    assert len(top_left) and len(bottom_right)
    assert len(top_left) + len(bottom_right) == len(lit)


def test_tap_is_a_dot_and_a_drawing_of_taps_is_not_blank():
    image = rasterize([(np.array([10]), np.array([10])),
                       (np.array([200, 200]), np.array([90, 90]))])
    assert (image > 0).sum() >= 2 * 9
    line_only = rasterize([(np.array([0, 255]), np.array([0, 255]))])
    with_tap = rasterize([(np.array([0, 255]), np.array([0, 255])),
                          (np.array([255]), np.array([0]))])
    assert (with_tap > 0).sum() > (line_only > 0).sum()


def test_negative_raw_coordinates_stay_inside_the_image():
    image = rasterize([(np.array([-100.0, 100.0]), np.array([-50.0, -50.0])),
                       (np.array([-100.0, -100.0]), np.array([-80.0, -20.0]))])
    lit = np.argwhere(image > 0)
    assert lit[:, 1].min() <= 3 and lit[:, 1].max() >= 55
    assert lit[:, 0].min() <= 3 and lit[:, 0].max() >= 55


def test_deterministic_and_int_or_float_input_alike():
    strokes = sample_drawings()[7]
    floats = [(x.astype(np.float64), y.astype(np.float64)) for x, y in strokes]
    lists = [(list(x), list(y)) for x, y in strokes]
    first = rasterize(strokes)
    np.testing.assert_array_equal(first, rasterize(strokes))
    np.testing.assert_array_equal(first, rasterize(floats))
    np.testing.assert_array_equal(first, rasterize(lists))


def test_size_and_line_width():
    strokes = sample_drawings()[0]
    big = rasterize(strokes, size=128, line_width=2)
    assert big.shape == (128, 128)
    assert (rasterize(strokes, line_width=8) > 0).sum() > \
        (rasterize(strokes, line_width=2) > 0).sum()


@pytest.mark.parametrize("strokes, message", [
    ([], "no strokes"),
    ([(np.array([]), np.array([]))], "no points"),
    ([(np.array([1, 2]), np.array([1]))], "2 x but 1 y"),
    ([(np.array([1.0, np.nan]), np.array([1.0, 2.0]))], "not finite"),
])
def test_bad_drawings_raise_a_clear_error(strokes, message):
    with pytest.raises(ValueError, match=message):
        rasterize(strokes)
