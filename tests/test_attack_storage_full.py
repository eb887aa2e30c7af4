"""Attacks on command_line.storage_full / run_command and lenient_json.nesting
that hold: real full-disk errors are one line, other errors keep their
traceback, and the nesting count equals the real depth of any JSON value."""
from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

import command_line
import lenient_json


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as e:
            raise outer from e
    except BaseException as e:
        return e


def test_full_disk_and_quota_found_through_causes_and_text():
    assert command_line.storage_full(OSError(errno.ENOSPC, "x")) == "No space left on device"
    assert command_line.storage_full(OSError(errno.EDQUOT, "x")) == "Disk quota exceeded"
    assert command_line.storage_full(chained(RuntimeError("worker failed"), OSError(errno.ENOSPC, "x")))
    assert command_line.storage_full(RuntimeError("OSError: [Errno 28] No space left on device: '/o/x'"))
    assert command_line.storage_full(RuntimeError("RESOURCE_EXHAUSTED: /m/ckpt.tmp; No space left on device"))


def test_other_errors_are_not_a_full_disk():
    assert command_line.storage_full(OSError(errno.EACCES, "Permission denied")) is None
    assert command_line.storage_full(chained(ValueError("bad"), KeyError("k"))) is None
    assert command_line.storage_full(RuntimeError("[Errno 2] No such file")) is None
    assert command_line.storage_full(KeyboardInterrupt()) is None


def test_run_command_a_full_disk_is_one_line_exit_2_and_a_bug_keeps_its_traceback(tmp_path):
    script = textwrap.dedent("""
        import errno, sys
        import command_line
        def full():
            raise RuntimeError("write failed") from OSError(errno.ENOSPC, "No space left on device", "/x")
        def bug():
            raise ValueError("a bug")
        sys.exit(command_line.run_command(full if sys.argv[1] == "full" else bug))
    """)
    full = subprocess.run([sys.executable, "-c", script, "full"], capture_output=True, text=True,
                          timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert full.returncode == 2
    assert full.stderr.strip().splitlines() == [
        "error: No space left on device: write failed; free space and run again"]
    bug = subprocess.run([sys.executable, "-c", script, "bug"], capture_output=True, text=True,
                         timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "ValueError: a bug" in bug.stderr


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


TEXT = st.text(alphabet=st.sampled_from('[]{}"\\a\u00e9\n/'), max_size=8)
VALUES = st.recursive(st.one_of(TEXT, st.integers(), st.none(), st.just(float("nan"))),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(TEXT, inner, max_size=3)),
                      max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans())
def test_nesting_is_the_depth_of_any_json_value_whatever_its_strings_hold(value, ascii_only):
    line = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert lenient_json.nesting(line) == depth(value)


def test_nesting_limit_edges():
    ok = b"[" * lenient_json.LENIENT_DEPTH + b"NaN" + b"]" * lenient_json.LENIENT_DEPTH
    assert lenient_json.loads(ok, "unexpected character") is not None
    deep = b"[" + ok + b"]"
    try:
        lenient_json.loads(deep, "unexpected character")
    except ValueError as e:
        assert "nested too deeply" in str(e)
    else:
        raise AssertionError("513 levels were read")
    # brackets in a string (escaped quotes included) are not nesting
    assert lenient_json.nesting(b'{"a": "\\"[[[[", "b": NaN}') == 1
