"""The pieces of quickdraw-download on their own: the notebook's groups,
name suggestions, x-goog-hash, object URLs, the progress line, the command's
entry point."""
from __future__ import annotations

import io
import runpy
import time

import pytest
import setuptools

from download_helpers import REPO, goog_hash
from dataset_categories import CATEGORIES
from pipeline import class_groups, http_fetch, object_digests, transfer_progress


def test_the_notebooks_groups_are_real_classes_of_its_sizes():
    assert {name: len(members) for name, members in class_groups.GROUPS.items()} == {
        "pets": 2, "zoo": 10, "animals": 43}
    for members in class_groups.GROUPS.values():
        assert set(members) <= CATEGORIES and len(set(members)) == len(members)
    assert set(class_groups.GROUPS["zoo"]) <= set(class_groups.GROUPS["animals"])
    assert class_groups.all_classes() == sorted(CATEGORIES) and len(CATEGORIES) == 345


@pytest.mark.parametrize("typed, meant", [
    ("dgo", "dog"), ("Cat", "cat"), ("eiffel tower", "The Eiffel Tower"), ("teddy bear", "teddy-bear"),
    ("sea_turtle", "sea turtle"), ("elefant", "elephant"), ("qwxz", None),
])
def test_a_misspelt_class_gets_the_closest_name(typed, meant):
    assert class_groups.suggest(typed, CATEGORIES) == ("; did you mean %r?" % meant if meant else "")


def test_a_class_file_lists_one_name_a_line(tmp_path):
    names = tmp_path / "mine.txt"
    names.write_text("cat\n\n  sea turtle \ncat\n")
    assert class_groups.parse_class_list(str(names)) == ["cat", "sea turtle"]
    with pytest.raises(class_groups.UnknownName, match="names no class"):
        class_groups.parse_class_list(" , ")


def test_goog_hash_headers_in_one_or_several_lines():
    line = goog_hash(b"hello", ("crc32c", "md5"))
    parsed = object_digests.parse_goog_hash([line])
    assert parsed == object_digests.parse_goog_hash(line.split(", "))
    assert parsed["crc32c"] == "mnG7TA==" and parsed["md5"] == "XUFAKrxLKna5cZ2REBfFkg=="


def test_object_urls_quote_the_name_as_the_bucket_spells_it():
    assert http_fetch.object_url("https://storage.googleapis.com/quickdraw_dataset/", "raw", "The Mona Lisa") == \
        "https://storage.googleapis.com/quickdraw_dataset/full/raw/The%20Mona%20Lisa.ndjson"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_gives_bytes_rate_and_time_left():
    progress = transfer_progress.Progress(4, 100 * 2 ** 20, stream=io.StringIO())
    progress.rate(progress.started)
    progress.add(30 * 2 ** 20)
    progress.file_done()
    assert progress.line(progress.started + 10) == \
        "1 of 4 files, 30.0 MiB of 100.0 MiB, 3.0 MiB/s, 23 s left"


def test_on_a_terminal_the_line_is_rewritten_and_ended_once():
    stream = _Terminal()
    with transfer_progress.Progress(1, 2048, stream=stream, every=0.01) as progress:
        progress.add(1024)
        progress.note("failed: x")
    text = stream.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n") and text.count("\n") == 2
    assert "\r\x1b[Kfailed: x\n" in text


def test_in_a_log_progress_is_plain_lines():
    stream = io.StringIO()
    with transfer_progress.Progress(1, 2048, stream=stream, every=0.01) as progress:
        progress.add(1024)
        deadline = time.monotonic() + 10
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "\r" not in stream.getvalue() and "1.0 KiB of 2.0 KiB" in stream.getvalue()


@pytest.mark.parametrize("n, text", [(812, "812 B"), (4.2 * 2 ** 20, "4.2 MiB"), (3 * 2 ** 40, "3072.0 GiB")])
def test_sizes_for_people(n, text):
    assert transfer_progress.size_text(n) == text


def test_the_command_is_installed_as_quickdraw_download(monkeypatch):
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    runpy.run_path(str(REPO / "setup.py"))
    assert "quickdraw-download=pipeline.download:main" in seen["entry_points"]["console_scripts"]
