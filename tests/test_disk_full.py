"""A disk that fills while a command writes: a last line that says so (for
the pipeline, after Beam's own log of the worker's error) and exit status 2,
and a pipeline run's temporary files removed (the space they took is what a
person needs back); on a real full filesystem where one can be mounted, and
with the error injected everywhere else."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

import command_line
from pipeline import reading
from pipeline import run as run_lib
from sample_paths import BUNDLED_SAMPLE, REPO

FLAGS = ["--train_observations_per_class=15", "--eval_observations_per_class=5", "--output_shards=2",
         "--skip_transform", "--direct_num_workers=1"]


def test_a_full_disk_is_one_line_and_the_temporary_files_go(tmp_path, monkeypatch, capsys):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)
    monkeypatch.setattr(reading, "_write_file", full)
    out = tmp_path / "out"
    assert run_lib.main(["--input=%s" % BUNDLED_SAMPLE, "--output=%s" % out, *FLAGS]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "No space left on device" in last and str(out) in last, last
    assert not [p.name for p in out.iterdir() if p.name.startswith((".tmp-", "beam-temp-"))]


def test_another_failure_is_not_called_a_full_disk():
    assert command_line.storage_full(RuntimeError("OSError: [Errno 28] No space left on device "
                                                   "[while running 'ReadDrawings/Read']")) == os.strerror(28)
    assert command_line.storage_full(RuntimeError("wrapped")) is None
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as e:
            raise RuntimeError("the job failed") from e
    except RuntimeError as e:
        assert command_line.storage_full(e) == os.strerror(errno.EDQUOT)
    assert command_line.storage_full(OSError(errno.EACCES, "Permission denied")) is None


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs (needs root and mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.slow
def test_a_real_full_filesystem_under_the_pipeline(small_disk):
    done = subprocess.run([sys.executable, "-m", "pipeline.run", "--output=%s" % (small_disk / "out"),
                           "--skip_transform"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "No space left on device" in last, done.stderr[-3000:]
    assert not [p.name for p in (small_disk / "out").iterdir() if p.name.startswith((".tmp-", "beam-temp-"))]


@pytest.mark.slow
def test_a_real_full_filesystem_under_the_trainer(small_disk, tmp_path):
    """The first checkpoint does not fit: one line, not TensorFlow's traceback."""
    from trainer_helpers import TINY_MODEL, data_flags, write_tutorial_dataset
    paths = write_tutorial_dataset(tmp_path / "data", ["apple", "star", "key"], train_per_class=4,
                                   eval_per_class=2)
    done = subprocess.run([sys.executable, "-m", "trainer.task", *data_flags(paths), *TINY_MODEL,
                           "--model_dir=%s" % (small_disk / "m"), "--steps=2", "--batch_size=4"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No space left on device"), done.stderr[-3000:]


def test_every_command_says_a_full_disk_in_one_line(capsys):
    """What TensorFlow raises for a write that does not fit ends in the
    system's message; run_command turns it into one line and status 2."""
    import tensorflow as tf

    def body():
        raise tf.errors.ResourceExhaustedError(None, None, "/m/ckpt-5_temp/part-0; No space left on device")
    assert command_line.run_command(body) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: No space left on device: /m/ckpt-5_temp/part-0; No space left on device; "
                   "free space and run again"]


def _raised(make):
    try:
        make()
    except BaseException as e:  # noqa: BLE001 - the test looks at it
        return e
    raise AssertionError("nothing raised")


def test_what_is_not_a_full_disk_is_left_to_its_traceback():
    """A text that only mentions the words, a context the code suppressed
    (raise ... from None), an interrupt, an exception that cannot say itself,
    and a cycle of causes (which must not loop)."""
    def cycle():
        try:
            open("/nonexistent/folder/file")
        except OSError as first:
            try:
                raise RuntimeError("could not open the cache") from first
            except RuntimeError:
                raise first

    def suppressed():
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise TypeError("a bug") from None

    def interrupted():
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise KeyboardInterrupt()

    class Mute(Exception):
        def __str__(self):
            raise RuntimeError("cannot say")

    for error in (ValueError("cannot parse 'No space left on device' in a log"), KeyError("[Errno 28] in a key"),
                  _raised(cycle), _raised(suppressed), _raised(interrupted), Mute()):
        assert command_line.storage_full(error) is None, repr(error)
