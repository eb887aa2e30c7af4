"""A disk that fills while the job writes: a last line that says so (after
Beam's own log of the worker's error), exit status 2, and the run's
temporary files removed (the space they took is
what a person needs back), on a real full filesystem where one can be
mounted and with the error injected everywhere else."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import output_folder, reading
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
    assert output_folder.storage_full(RuntimeError("OSError: [Errno 28] No space left on device "
                                                   "[while running 'ReadDrawings/Read']")) == os.strerror(28)
    assert output_folder.storage_full(RuntimeError("wrapped")) is None
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as e:
            raise RuntimeError("the job failed") from e
    except RuntimeError as e:
        assert output_folder.storage_full(e) == os.strerror(errno.EDQUOT)
    assert output_folder.storage_full(OSError(errno.EACCES, "Permission denied")) is None


@pytest.mark.slow
def test_a_real_full_filesystem(tmp_path):
    """A 200 KiB tmpfs: the workers' files fill it (needs root and mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
    try:
        done = subprocess.run([sys.executable, "-m", "pipeline.run", "--output=%s" % (disk / "out"),
                               "--skip_transform"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-3000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "No space left on device" in last, done.stderr[-3000:]
        assert not [p.name for p in (disk / "out").iterdir() if p.name.startswith((".tmp-", "beam-temp-"))]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
