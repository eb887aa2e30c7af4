"""quickdraw-download against a bucket that lies: a body that runs past the
object's size when no Content-Length bounds it, and a Content-Length that is
not a plain number."""
from __future__ import annotations

from pathlib import Path

import pytest

from download_helpers import sample_objects, serving
from pipeline import download, http_requests

OBJECTS = sample_objects()


def _run(bucket, dest: Path, *flags: str) -> int:
    return download.main(["--dest=%s" % dest, "--base_url=%s" % bucket.url, "--timeout=0.5",
                          "--retries=1", "--classes=cat", *flags])


def _left(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


@pytest.mark.parametrize("hashes", [(), ("crc32c",)])
def test_a_body_longer_than_the_object_is_refused_not_cut_to_size(tmp_path, capsys, hashes):
    """Without a checksum the size is the only check: bytes past it mean the first
    ones are not the object either, so no copy is kept (a rerun fetches afresh)."""
    with serving(OBJECTS) as bucket:
        bucket.faults.hashes = hashes
        bucket.faults.unbounded_body["cat"] = b"more bytes than the object has\n"
        assert _run(bucket, tmp_path) == 1
        assert "the body went on past the object's %d bytes" % len(OBJECTS["cat"]) \
            in capsys.readouterr().err
        assert _left(tmp_path) == []
        bucket.faults.unbounded_body["cat"] = b""   # the same, ending where the object does
        assert _run(bucket, tmp_path) == 0
    assert (tmp_path / "cat.ndjson").read_bytes() == OBJECTS["cat"]


@pytest.mark.parametrize("length", ["\u00b2", "-5", "1e3", " ", "9" * 5000])
def test_a_content_length_that_is_not_a_plain_number_fails_the_file_in_one_line(
        tmp_path, capsys, length):
    with serving(OBJECTS) as bucket:
        bucket.faults.length_header["cat"] = length
        assert _run(bucket, tmp_path) == 1
    err = capsys.readouterr().err
    assert "failed: cat.ndjson: %s" % bucket.url in err and "no size (Content-Length)" in err
    assert "Traceback" not in err and _left(tmp_path) == []


def test_declared_length_reads_ascii_digits_only():
    class Response:
        def __init__(self, value):
            self.value = value

        def getheader(self, name):
            return self.value
    assert [http_requests.declared_length(Response(v)) for v in
            ("123", " 42 ", None, "", "\u00b2", "\u0665", "+1", "9" * 19)] == \
        [123, 42, None, None, None, None, None, None]


def test_a_dest_name_too_long_to_look_up_is_one_line(capsys):
    assert download.main(["--classes=cat", "--dest=" + "a" * 5000]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: --dest aaaa"), err
    assert "File name too long" in err[0], err
