"""Reading input in byte ranges, and damaged files: no Beam, no TensorFlow."""
from __future__ import annotations

import gzip
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import sources
from pipeline import split as split_lib

LINES = [b'{"a": 1}', b"", b"x" * 300, b"second\r", b"   ", b"\xef\xbb\xbfbom", b"last"]


def whole(path, cap=0):
    return list(sources.read_lines(sources.Range(0, str(path), 0, None), cap))


@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("target", [1, 7, 9, 64, 301, 10_000])
def test_byte_ranges_read_every_line_exactly_once(tmp_path, target, trailing_newline):
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n".join(LINES) + (b"\n" if trailing_newline else b""))
    units = sources.plan_units([str(path)], [path.stat().st_size], target)
    got = [line for unit in units for r in unit for line in sources.read_lines(r)]
    assert got == whole(path)
    offsets = [0]
    for line in LINES[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    assert got == list(zip(offsets, LINES))


def test_small_files_share_a_unit_and_gzip_is_never_cut(tmp_path):
    files = [str(tmp_path / n) for n in ("a.ndjson", "b.ndjson", "c.ndjson.gz", "d.ndjson")]
    units = sources.plan_units(files, [10, 10, 500, 250], target=100)
    assert units == [
        [sources.Range(0, files[0], 0, None), sources.Range(1, files[1], 0, None)],
        [sources.Range(2, files[2], 0, None)],
        [sources.Range(3, files[3], 0, 100)],
        [sources.Range(3, files[3], 100, 200)],
        [sources.Range(3, files[3], 200, None)],
    ]


def test_overlong_lines_are_cut_without_being_held_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 16)
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"short\n" + b"y" * 100 + b"\nnext\n" + b"z" * 50)
    assert whole(path, cap=20) == [(0, b"short"), (6, b"y" * 21), (107, b"next"), (112, b"z" * 21)]


def test_gzip_members_are_all_read(tmp_path):
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(gzip.compress(b"one\ntwo\n") + gzip.compress(b"three\n") + b"\0" * 8)
    assert [line for _, line in whole(path)] == [b"one", b"two", b"three"]


def _gzip_of_many_lines(path, n=20_000):
    data = b"".join(b'{"line": %d, "pad": "%s"}\n' % (i, os.urandom(8).hex().encode()) for i in range(n))
    path.write_bytes(gzip.compress(data))
    return data


def test_truncated_gzip_keeps_the_complete_lines_and_says_so(tmp_path):
    path = tmp_path / "cut.ndjson.gz"
    data = _gzip_of_many_lines(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    got = []
    with pytest.raises(sources.Damage) as damage:
        for item in sources.read_lines(sources.Range(0, str(path), 0, None)):
            got.append(item[1])
    assert damage.value.reason == sources.TRUNCATED_GZIP
    assert got and got == data.split(b"\n")[: len(got)]


def test_corrupt_gzip_is_reported_not_raised_as_zlib_error(tmp_path):
    path = tmp_path / "bad.ndjson.gz"
    _gzip_of_many_lines(path)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(sources.Damage) as damage:
        whole(path)
    assert damage.value.reason == sources.CORRUPT_GZIP


def test_directory_and_missing_file_are_damage(tmp_path):
    (tmp_path / "x.ndjson").mkdir()
    with pytest.raises(sources.Damage) as damage:
        whole(tmp_path / "x.ndjson")
    assert damage.value.reason == sources.IS_A_DIRECTORY
    with pytest.raises(sources.Damage) as damage:
        whole(tmp_path / "gone.ndjson")
    assert damage.value.reason == sources.UNREADABLE


def rank(h, file=0, offset=0):
    return (h, 1000 + h, file, offset)


def test_plan_keeps_the_first_copy_and_drops_the_rest():
    quota = split_lib.Quota(2, 1, 1)
    ranks = sorted([rank(1), rank(2), rank(2, file=1), rank(2, offset=9), rank(3), rank(4), rank(5)])
    plan = split_lib.plan_class(ranks, quota)
    assert plan.duplicates == 2 and plan.dropped == {rank(2, file=1), rank(2, offset=9)}
    assert plan.selected == {"train": 2, "eval": 1, "test": 1}
    assert [split_lib.split_of(r, plan) for r in ranks] == ["train", "train", None, None, "eval", "test", None]


def test_plan_of_a_short_class_and_copies_at_the_boundary():
    quota = split_lib.Quota(1, 5, 0)
    ranks = [rank(1), rank(1, offset=5), rank(7)]
    plan = split_lib.plan_class(ranks, quota)
    assert plan.selected == {"train": 1, "eval": 1, "test": 0} and plan.duplicates == 1
    assert [split_lib.split_of(r, plan) for r in ranks] == ["train", None, "eval"]


def test_keep_lowest_keeps_every_copy_of_the_kept_drawings():
    items = [(rank(h, offset=o), "payload") for h in (5, 1, 3, 2) for o in (0, 1)]
    kept = split_lib.keep_lowest(items, 2)
    assert [r for r, _ in kept] == [rank(1, offset=0), rank(1, offset=1), rank(2, offset=0), rank(2, offset=1)]


def test_shard_merge_with_more_sections_than_files_open_at_once(tmp_path, monkeypatch):
    import struct

    from pipeline import run_files, writing
    monkeypatch.setattr(writing, "FAN_IN", 3)
    rng = __import__("random").Random(1)
    frames = [(rng.getrandbits(64), b"record %d" % i) for i in range(200)]
    sections = []
    for i in range(8):
        mine = sorted(frames[i::8])
        sections.append(run_files.write_run(str(tmp_path / ("run-%d" % i)), iter(mine)))
    quota = split_lib.Quota(1, 0, 0)
    write = writing.WriteShards(str(tmp_path / "out"), str(tmp_path / "work"), quota, 1)
    split, path, n = write._write(("train", 0), sections + [None])
    assert n == 200
    data, got = open(path, "rb").read(), []
    while data:
        length = struct.unpack("<Q", data[:8])[0]
        got.append(data[12:12 + length])
        data = data[16 + length:]
    assert got == [record for _, record in sorted(frames)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2 ** 63, 2 ** 64 - 1]), st.integers(0, 2 ** 64 - 1),
                          st.integers(0, 3), st.integers(0, 2 ** 40)), max_size=40),
       st.integers(0, 12))
def test_lowest_ranks_of_an_array_is_keep_lowest(ranks, n):
    """The compact array form selects exactly what the tuple form does, with
    hashes above 2^63 and copies (equal first two fields) across the cut."""
    ranks = ranks + [(h, i, f + 1, o) for h, i, f, o in ranks[:5]]
    got = split_lib.lowest_ranks(split_lib.rank_array(ranks), n)
    assert [tuple(r) for r in got.tolist()] == [r for r, in split_lib.keep_lowest([(r,) for r in ranks], n)]


def _read_promptly(path, seconds: float = 5.0):
    """read_lines of a whole file in a thread: the Damage it raises, the lines
    it gives, or a failure if it is still reading after ``seconds``."""
    import threading

    result = {}

    def read():
        try:
            result["lines"] = whole(path)
        except sources.Damage as damage:
            result["damage"] = damage

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "still reading %s after %.0f s" % (path, seconds)
    return result


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "/dev/urandom", "/dev/null"])
def test_anything_but_a_regular_file_is_damage_found_before_reading(tmp_path, target):
    path = tmp_path / "x.ndjson"
    if target == "fifo":
        os.mkfifo(path)  # opening it would wait for a writer forever
    else:
        os.symlink(target, path)  # a device never ends (or, /dev/null, reads as empty)
    damage = _read_promptly(path).get("damage")
    assert damage is not None and damage.reason == sources.NOT_A_REGULAR_FILE
    assert ("FIFO" if target == "fifo" else "character device") in damage.detail


def test_a_link_to_a_directory_is_a_directory(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "x.ndjson")
    assert _read_promptly(tmp_path / "x.ndjson")["damage"].reason == sources.IS_A_DIRECTORY


def test_a_file_swapped_for_a_fifo_after_its_status_is_read_is_still_refused(tmp_path, monkeypatch):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'{"a": 1}\n')
    real_stat = os.stat

    def stat_then_swap(p, *args, **kwargs):
        found = real_stat(p, *args, **kwargs)
        if str(p) == str(path):
            path.unlink()
            os.mkfifo(path)
        return found

    monkeypatch.setattr(os, "stat", stat_then_swap)
    assert _read_promptly(path)["damage"].reason == sources.NOT_A_REGULAR_FILE


def test_object_store_paths_are_opened_by_beam_without_a_local_status(monkeypatch):
    """gs:// holds objects only: no local stat, and the bytes come from Beam's filesystem."""
    import io

    from apache_beam.io.filesystems import FileSystems

    opened = []

    def beam_open(path, compression_type=None):
        opened.append(path)
        return io.BytesIO(b'{"a": 1}\nsecond\n')

    real_stat = os.stat

    def no_stat(path, *args, **kwargs):
        assert "://" not in str(path), "stat of an object store path: %s" % path
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", beam_open)
    monkeypatch.setattr(os, "stat", no_stat)
    path = "gs://some-bucket/drawings/cat.ndjson"
    assert not sources.is_local(path) and sources.is_local("data/sample/cat.ndjson")
    assert whole(path) == [(0, b'{"a": 1}'), (9, b"second")]
    assert opened == [path]
