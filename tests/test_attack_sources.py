"""Byte ranges of generated files: whatever the bytes, the cut points, the read
chunk size and the cap on line length, every line is read exactly once, at its
offset, and a line over the cap stays over it (so it is rejected as too long)
while holding at most ``max(cap + 1, chunk)`` of its bytes."""
from __future__ import annotations

import gzip

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import sources

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"\r"))
CONTENT = st.tuples(st.lists(LINE, max_size=12), st.booleans()).map(
    lambda t: b"\n".join(t[0]) + (b"\n" if t[0] and t[1] else b""))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def expected(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, line) of every line, as the format defines it."""
    out, offset = [], 0
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    for line in parts:
        out.append((offset, line))
        offset += len(line) + 1
    return out


def check(got: list, data: bytes, cap: int, chunk: int) -> None:
    want = expected(data)
    assert [offset for offset, _ in got] == [offset for offset, _ in want]
    for (_, line), (_, full) in zip(got, want):
        if cap and len(full) > cap:
            assert full.startswith(line) and cap < len(line) <= max(cap + 1, chunk + cap)
        else:
            assert line == full


@SETTINGS
@given(data=CONTENT, target=st.integers(1, 80), chunk=st.integers(1, 50), cap=st.integers(0, 30))
def test_plain_ranges_read_every_line_once(tmp_path, monkeypatch, data, target, chunk, cap):
    monkeypatch.setattr(sources, "CHUNK_BYTES", chunk)
    path = tmp_path / "a.ndjson"
    path.write_bytes(data)
    units = sources.plan_units([str(path)], [len(data)], target)
    got = [line for unit in units for r in unit for line in sources.read_lines(r, cap)]
    check(got, data, cap, chunk)


@SETTINGS
@given(data=CONTENT, chunk=st.integers(1, 50), cap=st.integers(0, 30))
def test_gzip_reads_the_same_lines_as_plain(tmp_path, monkeypatch, data, chunk, cap):
    monkeypatch.setattr(sources, "CHUNK_BYTES", chunk)
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(gzip.compress(data))
    check(list(sources.read_lines(sources.Range(0, str(path), 0, None), cap)), data, cap, chunk)


@SETTINGS
@given(data=CONTENT.filter(lambda d: len(d) > 30), cut=st.integers(1, 1000))
def test_a_cut_gzip_gives_complete_lines_then_the_damage(tmp_path, data, cut):
    path = tmp_path / "a.ndjson.gz"
    packed = gzip.compress(data)
    path.write_bytes(packed[:cut % (len(packed) - 1) + 1])
    got = []
    with pytest.raises(sources.Damage) as damage:
        for item in sources.read_lines(sources.Range(0, str(path), 0, None)):
            got.append(item)
    assert damage.value.reason in (sources.TRUNCATED_GZIP, sources.CORRUPT_GZIP)
    assert got == expected(data)[:len(got)]


def test_a_gzip_bomb_line_is_read_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.ndjson.gz"
    path.write_bytes(gzip.compress(b"x" * (256 << 20) + b"\n" + b'{"after": 1}\n', compresslevel=9))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        got = [(offset, len(line)) for offset, line in
               sources.read_lines(sources.Range(0, str(path), 0, None), 1000)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got[1] == ((256 << 20) + 1, 12) and 1000 < got[0][1] <= 1001 + sources.CHUNK_BYTES
    assert peak < 8 * sources.CHUNK_BYTES, peak
