"""quickdraw-download against a local bucket (tests/download_helpers.py):
byte-identical files, resumed after drops and stalls, checksums, names
checked before the first request, disk space, two downloaders at once."""
from __future__ import annotations

import errno
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from download_helpers import REPO, SAMPLE, download_worker, sample_objects, serving
from pipeline import download, http_fetch
from race_helpers import race

OBJECTS = sample_objects()
TWO = ["cat", "dog"] if "dog" in OBJECTS else ["cat", "apple"]


def _run(bucket, dest: Path, *flags: str) -> int:
    return download.main(["--dest=%s" % dest, "--base_url=%s" % bucket.url, "--timeout=0.5", *flags])


def _same_as_sample(dest: Path, names) -> None:
    for name in names:
        assert (dest / (name + ".ndjson")).read_bytes() == OBJECTS[name], name
    assert not [p.name for p in dest.iterdir() if p.name.endswith((http_fetch.PART, http_fetch.LOCK))]


def test_every_file_of_the_sample_arrives_byte_identical_and_checked(tmp_path, capsys):
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(OBJECTS) + "\n")
    with serving(OBJECTS) as bucket:
        assert _run(bucket, tmp_path / "data", "--classes=%s" % names, "--jobs=4") == 0
    _same_as_sample(tmp_path / "data", OBJECTS)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(n + ".ndjson" for n in OBJECTS)
    out = capsys.readouterr().out
    assert "%d file(s) fetched" % len(OBJECTS) in out
    assert "Verified: %d by CRC-32C" % len(OBJECTS) in out


def test_a_second_run_fetches_nothing_and_replaces_a_wrong_copy(tmp_path, capsys):
    with serving(OBJECTS) as bucket:
        assert _run(bucket, tmp_path, "--classes=" + ",".join(TWO)) == 0
        damaged = bytearray(OBJECTS[TWO[0]])
        damaged[10] ^= 1
        (tmp_path / (TWO[0] + ".ndjson")).write_bytes(bytes(damaged))   # same size, other bytes
        bucket.requests.clear()
        assert _run(bucket, tmp_path, "--classes=" + ",".join(TWO)) == 0
        assert len(bucket.gets(TWO[0])) == 1 and bucket.gets(TWO[1]) == []
    _same_as_sample(tmp_path, TWO)
    assert "1 file(s) fetched" in capsys.readouterr().out


def test_names_with_spaces_and_the_raw_format_use_the_bucket_names(tmp_path):
    objects = {"sea turtle": OBJECTS["cat"], "The Eiffel Tower": OBJECTS[TWO[1]]}
    with serving(objects, "raw") as bucket:
        assert _run(bucket, tmp_path, "--classes=sea turtle,The Eiffel Tower", "--format=raw") == 0
        paths = {r.path for r in bucket.requests}
    assert paths == {"/full/raw/sea%20turtle.ndjson", "/full/raw/The%20Eiffel%20Tower.ndjson"}
    assert (tmp_path / "sea turtle.ndjson").read_bytes() == OBJECTS["cat"]


def test_a_missing_object_fails_alone_with_its_reason(tmp_path, capsys):
    present = {n: OBJECTS[n] for n in TWO}
    with serving(present) as bucket:
        assert _run(bucket, tmp_path, "--classes=%s,zebra" % ",".join(TWO)) == 1
    captured = capsys.readouterr()
    assert "failed: zebra.ndjson: %s/full/simplified/zebra.ndjson: HTTP 404" % bucket.url in captured.err
    assert "1 failed" in captured.out and "Failed: zebra" in captured.out
    _same_as_sample(tmp_path, TWO)
    assert not (tmp_path / "zebra.ndjson").exists()


def test_a_dropped_connection_is_resumed_from_where_it_stopped(tmp_path):
    with serving(OBJECTS) as bucket:
        bucket.faults.drop_at["cat"] = 5000
        assert _run(bucket, tmp_path, "--classes=cat") == 0
        assert [r.range for r in bucket.gets("cat")] == [None, "bytes=5000-"]
        assert bucket.body_bytes["cat"] == len(OBJECTS["cat"])     # no byte fetched twice
    _same_as_sample(tmp_path, ["cat"])


def test_a_stalled_body_times_out_and_resumes(tmp_path):
    with serving(OBJECTS) as bucket:
        bucket.faults.stall_at["cat"] = (3000, 20.0)
        started = time.monotonic()
        assert _run(bucket, tmp_path, "--classes=cat") == 0
        assert time.monotonic() - started < 10
        assert [r.range for r in bucket.gets("cat")] == [None, "bytes=3000-"]
    _same_as_sample(tmp_path, ["cat"])


def test_a_trickling_body_counts_as_stalled_and_resumes(tmp_path):
    with serving(OBJECTS) as bucket:
        bucket.faults.trickle_at["cat"] = (2000, 0.05)      # 20 bytes/s for 6 s: each read arrives in time
        started = time.monotonic()
        assert _run(bucket, tmp_path, "--classes=cat") == 0
        assert time.monotonic() - started < 4.5
        ranges = [r.range for r in bucket.gets("cat")]
    assert len(ranges) == 2 and ranges[1].startswith("bytes=20")
    _same_as_sample(tmp_path, ["cat"])


def test_a_server_that_keeps_failing_is_given_up_after_the_retries(tmp_path, capsys):
    with serving(OBJECTS) as bucket:
        bucket.faults.status["cat"] = [503] * 10
        assert _run(bucket, tmp_path, "--classes=cat", "--retries=2") == 1
        assert len([r for r in bucket.requests if r.method == "HEAD"]) == 3
    assert "failed: cat.ndjson: %s/full/simplified/cat.ndjson: HTTP 503" % bucket.url in capsys.readouterr().err


def test_a_server_that_ignores_the_range_sends_the_whole_file_again(tmp_path):
    with serving(OBJECTS) as bucket:
        bucket.faults.drop_at["cat"] = 5000
        bucket.faults.ignore_range = True
        assert _run(bucket, tmp_path, "--classes=cat") == 0
    _same_as_sample(tmp_path, ["cat"])


def test_a_partial_file_of_other_bytes_is_caught_and_fetched_whole(tmp_path, capsys):
    (tmp_path / "cat.ndjson.part").write_bytes(OBJECTS[TWO[1]][:3000])   # left by an older object
    with serving(OBJECTS) as bucket:
        assert _run(bucket, tmp_path, "--classes=cat") == 0
        assert [r.range for r in bucket.gets("cat")] == ["bytes=3000-", None]
    _same_as_sample(tmp_path, ["cat"])
    assert any("cat.ndjson" in line and "CRC-32C" in line for line in capsys.readouterr().out.splitlines())


def test_an_object_that_changes_during_the_download_fails_and_a_rerun_gets_the_new_one(tmp_path, capsys):
    with serving(OBJECTS) as bucket:
        bucket.faults.replace_after_head["cat"] = OBJECTS[TWO[1]]
        assert _run(bucket, tmp_path, "--classes=cat") == 1
        assert any("cat.ndjson" in line and "changed" in line and "size" in line
                   for line in capsys.readouterr().err.splitlines())
        assert _run(bucket, tmp_path, "--classes=cat") == 0
    assert (tmp_path / "cat.ndjson").read_bytes() == OBJECTS[TWO[1]]


@pytest.mark.parametrize("check", ["crc32c", "md5"])
def test_a_corrupt_byte_is_caught_and_fetched_again(tmp_path, capsys, check):
    with serving(OBJECTS) as bucket:
        bucket.faults.hashes = (check,)
        bucket.faults.corrupt["cat"] = 1
        assert _run(bucket, tmp_path, "--classes=" + ",".join(TWO)) == 0
        assert [r.range for r in bucket.gets("cat")] == [None, None]
    _same_as_sample(tmp_path, TWO)
    out = capsys.readouterr().out
    kind = check.upper().replace("CRC32C", "CRC-32C")
    assert any("cat.ndjson" in line and kind in line for line in out.splitlines())
    assert re.search(r"mismatch: 1$", out, re.M), out


def test_a_byte_that_stays_corrupt_is_reported_and_never_renamed(tmp_path, capsys):
    with serving(OBJECTS) as bucket:
        bucket.faults.corrupt["cat"] = 99
        assert _run(bucket, tmp_path, "--classes=" + ",".join(TWO)) == 1
        assert len(bucket.gets("cat")) == 2
    err = capsys.readouterr().err
    assert any("cat.ndjson" in line and "CRC-32C" in line for line in err.splitlines()), err
    assert not (tmp_path / "cat.ndjson").exists() and not (tmp_path / "cat.ndjson.part").exists()
    _same_as_sample(tmp_path, TWO[1:])


def test_without_a_checksum_the_size_is_checked(tmp_path, capsys):
    with serving(OBJECTS) as bucket:
        bucket.faults.hashes = ()
        assert _run(bucket, tmp_path, "--classes=cat") == 0
    _same_as_sample(tmp_path, ["cat"])
    assert re.search(r"\b1 by size\b", capsys.readouterr().out)


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_an_unknown_class_is_named_before_any_request(tmp_path, capsys):
    with serving(OBJECTS) as bucket:
        status = _run(bucket, tmp_path / "data", "--classes=cat,dgo")
        assert bucket.requests == []
    assert status == 2
    line = _one_error_line(capsys)
    assert all(fact in line for fact in ("'dgo'", "--classes", "'dog'", "--list")), line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("flags, message", [
    (["--group=zo"], "error: unknown group 'zo'; did you mean 'zoo'? (groups: pets, zoo, animals)"),
    (["--classes=Eiffel tower"], "did you mean 'The Eiffel Tower'?"),
    (["--classes=sea_turtle"], "did you mean 'sea turtle'?"),
    ([], "error: name what to fetch: --classes=cat,dog, --group=NAME or --all (see --list)"),
    (["--classes=cat", "--group=zoo"], "error: argument --group: not allowed with argument --classes"),
    (["--all", "--jobs=0"], "error: argument --jobs: '0': must be a whole number from 1 to 64"),
    (["--all", "--timeout=-1"], "error: argument --timeout: '-1': must be a positive number of seconds"),
    (["--all", "--format=png"], "error: argument --format: invalid choice: 'png'"),
    (["--all", "--base_url=ftp://example.com"], "error: --base_url 'ftp://example.com': must be an http"),
    (["--all", "--job=3"], "error: unknown option --job; did you mean --jobs?"),
])
def test_user_errors_are_one_line_and_status_2(tmp_path, capsys, flags, message):
    with serving(OBJECTS) as bucket:
        argv = ["--dest=%s" % tmp_path, *flags]
        if not any(f.startswith("--base_url") for f in flags):
            argv.append("--base_url=%s" % bucket.url)
        try:
            status = download.main(argv)
        except SystemExit as e:
            status = e.code
        assert bucket.requests == []
    assert status == 2
    assert message in _one_error_line(capsys)


def test_a_dest_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert download.main(["--all", "--dest=%s" % (tmp_path / "f")]) == 2
    assert _one_error_line(capsys) == "error: --dest %s is a file: name a folder" % (tmp_path / "f")


def test_not_enough_free_space_is_refused_before_the_first_body(tmp_path, capsys, monkeypatch):
    free = download.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: free._replace(free=1000))
    with serving(OBJECTS) as bucket:
        assert _run(bucket, tmp_path, "--classes=" + ",".join(TWO)) == 2
        assert {r.method for r in bucket.requests} == {"HEAD"}
    need = sum(len(OBJECTS[n]) for n in TWO) / 1024
    assert _one_error_line(capsys) == ("error: not enough space in %s: the 2 file(s) need %.1f KiB more, "
                                       "1000 B is free" % (tmp_path, need))
    assert list(tmp_path.iterdir()) == []


def test_a_partial_file_needs_only_the_rest_of_the_space(tmp_path, monkeypatch):
    (tmp_path / "cat.ndjson.part").write_bytes(OBJECTS["cat"][:-1000])
    free = download.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: free._replace(free=1000))
    with serving(OBJECTS) as bucket:
        assert _run(bucket, tmp_path, "--classes=cat") == 0
        assert [r.range for r in bucket.gets("cat")] == ["bytes=%d-" % (len(OBJECTS["cat"]) - 1000)]
    _same_as_sample(tmp_path, ["cat"])


def test_a_full_disk_stops_the_run_keeps_the_parts_and_a_rerun_finishes(tmp_path, capsys, monkeypatch):
    real_write = http_fetch._write_all
    written = {"bytes": 0}

    def fills_up(fd: int, data: bytes) -> None:
        if written["bytes"] + len(data) > 6000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["bytes"] += len(data)
        real_write(fd, data)

    monkeypatch.setattr(http_fetch, "_write_all", fills_up)
    names = sorted(OBJECTS)[:6]
    with serving(OBJECTS) as bucket:
        bucket.faults.chunk_delay = 0.01
        assert _run(bucket, tmp_path, "--classes=" + ",".join(names), "--jobs=2") == 1
        captured = capsys.readouterr()
        full = [line for line in captured.err.splitlines() if "No space left on device" in line]
        assert len(full) >= 2 and any("not finished" in line for line in full), captured.err
        assert "6 failed" in captured.out
        parts = {p.name[:-len(".ndjson.part")]: p.stat().st_size for p in tmp_path.glob("*.part")}
        assert sum(parts.values()) == written["bytes"] > 0
        assert not list(tmp_path.glob("*.ndjson"))
        monkeypatch.setattr(http_fetch, "_write_all", real_write)
        bucket.requests.clear()
        assert _run(bucket, tmp_path, "--classes=" + ",".join(names)) == 0
        for name, size in parts.items():
            assert [r.range for r in bucket.gets(name)] == ["bytes=%d-" % size if size else None]
    _same_as_sample(tmp_path, names)


def test_two_downloads_into_one_folder_fetch_each_file_once(tmp_path):
    names = sorted(OBJECTS)[:8]
    with serving(OBJECTS) as bucket:
        bucket.faults.chunk_delay = 0.02
        argv = ["--classes=" + ",".join(names), "--dest=%s" % tmp_path, "--base_url=%s" % bucket.url, "--jobs=3"]
        assert race(download_worker, [(argv,)], processes=2) == [[0, 0]]
        for name in names:
            assert bucket.body_bytes[name] == len(OBJECTS[name]), name
    _same_as_sample(tmp_path, names)


def test_ctrl_c_keeps_the_partial_file_and_a_rerun_resumes_it(tmp_path):
    with serving(OBJECTS) as bucket:
        bucket.faults.stall_at["cat"] = (5000, 30.0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.download", "--classes=cat", "--dest=%s" % tmp_path,
             "--base_url=%s" % bucket.url, "--timeout=20"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        part = tmp_path / "cat.ndjson.part"
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size == 5000):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        interrupted = time.monotonic()
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert time.monotonic() - interrupted < 5       # not after the 20 s read timeout
        assert "resume" in out
        assert part.stat().st_size == 5000 and not (tmp_path / "cat.ndjson").exists()
        assert _run(bucket, tmp_path, "--classes=cat") == 0
        assert bucket.gets("cat")[-1].range == "bytes=5000-"
    _same_as_sample(tmp_path, ["cat"])


def test_importing_the_command_loads_neither_tensorflow_nor_beam():
    code = ("import sys, pipeline.download; "
            "print(sorted(m for m in ('tensorflow', 'apache_beam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_sample_is_what_the_tests_serve():
    assert SAMPLE.is_dir() and len(OBJECTS) >= 20 and "cat" in OBJECTS
