"""``quickdraw-render`` given damaged files and bad output places: the good
drawings are still drawn, and every user error is one line with exit status 2."""
from __future__ import annotations

import gzip
import os

import pytest
from PIL import Image

from pipeline.render import main

from sample_paths import BUNDLED_SAMPLE


@pytest.fixture
def inputs(tmp_path):
    """cat.ndjson whole, and moon.ndjson.gz cut in the middle of its stream."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cat.ndjson").write_bytes((BUNDLED_SAMPLE / "cat.ndjson").read_bytes())
    packed = gzip.compress((BUNDLED_SAMPLE / "moon.ndjson").read_bytes())
    (folder / "moon.ndjson.gz").write_bytes(packed[:len(packed) // 2])
    return folder


def _one_line_error(capsys, args: list[str], *words: str) -> None:
    assert main(args) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "error" in err[0], err
    for w in words:
        assert w in err[0], err[0]


def test_a_cut_gzip_among_good_files_is_reported_and_the_rest_drawn(inputs, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["--input", str(inputs), "--output", str(out), "--rows", "1", "--cols", "2",
                 "--cell", "64"]) == 0
    captured = capsys.readouterr()
    assert "1 damaged_file" in captured.out
    assert "moon.ndjson.gz is damaged" in captured.err
    assert Image.open(out).size == (128, 64)


def test_nothing_to_draw_but_a_damaged_file_is_a_warning_and_one_error_line(inputs, tmp_path, capsys):
    assert main(["--input", str(inputs / "moon.ndjson.gz"), "--output", str(tmp_path / "m.png"),
                 "--classes", "zebra"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "moon.ndjson.gz is damaged" in err[0], err
    assert err[1].startswith("error: no drawing of class zebra") and "1 damaged_file" in err[1]


def test_output_that_is_a_folder_or_unwritable_is_one_line(inputs, tmp_path, capsys):
    args = ["--input", str(inputs / "cat.ndjson"), "--rows", "1", "--cols", "1", "--cell", "64"]
    _one_line_error(capsys, args + ["--output", str(tmp_path)], "is a folder")
    _one_line_error(capsys, args + ["--output", str(inputs / "cat.ndjson" / "m.png")], "cannot write")
    _one_line_error(capsys, args + ["--output", "/sys/m.png"], "cannot write")
    assert sorted(os.listdir(inputs)) == ["cat.ndjson", "moon.ndjson.gz"]


def test_a_mosaic_too_large_to_hold_is_refused_before_reading(inputs, tmp_path, capsys):
    out = str(tmp_path / "m.png")
    _one_line_error(capsys, ["--input", str(inputs), "--output", out, "--cell", "100000"], "pixels")
    _one_line_error(capsys, ["--input", str(inputs), "--output", out, "--rows", "3000", "--cols", "3000"],
                    "pixels")
    assert not os.path.exists(out)


def test_an_input_name_too_long_to_look_up_is_one_line(tmp_path, capsys):
    code = main(["--input=" + "a" * 5000, "--output=%s" % (tmp_path / "m.png")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --input aaaa"), err
    assert "File name too long" in err[0] and len(err[0]) < 200, err
