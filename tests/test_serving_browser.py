"""The drawing page in a real browser (headless Chromium): strokes drawn with pointer
events get guesses that change, Undo, "Show me" and Clear work, a screenshot is taken."""
from __future__ import annotations

import pytest

from serving import page_check

pytestmark = pytest.mark.slow


def test_page_guesses_after_each_stroke(server, tmp_path):
    if page_check.find_browser() is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set QUICKDRAW_CHROMIUM)")
    screenshot = tmp_path / "page.png"
    report = page_check.play(server.url + "/", str(screenshot), target="cat")
    strokes = report["strokes"]
    assert len(strokes) >= 2 and all(len(guesses) == 3 for guesses in strokes)
    assert len({tuple(g) for g in strokes}) > 1, "the guesses never changed: %s" % strokes
    assert report["verdict"].startswith(("Recognised! p(cat)", "p(cat)"))
    assert report["drawn_strokes"] == len(strokes)
    assert report["after_undo"] == len(strokes) - 1
    assert len(report["show_me"]) == 3 and report["after_clear"] == []
    assert report["status"] == ""
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
