"""atomic_outputs: a file replaced whole on a local disk and on another
TensorFlow filesystem, with no temporary file left behind."""
from __future__ import annotations

import os

import pytest

import atomic_outputs
import atomic_storage


def test_a_local_file_is_replaced_whole_and_synced(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    atomic_outputs.write_atomically(str(path), b"old")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    atomic_outputs.write_atomically(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert len(synced) >= 2, "the file and its folder reach the disk"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_local_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    atomic_outputs.write_atomically(str(path), b"old")

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(atomic_storage.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_outputs.write_atomically(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_another_tensorflow_filesystem_gets_a_renamed_temporary_file():
    tf = pytest.importorskip("tensorflow")
    folder = "ram://outputs-%d" % os.getpid()
    path = folder + "/report.json"
    atomic_outputs.write_atomically(path, b"old")
    atomic_outputs.write_atomically(path, b"new")
    with tf.io.gfile.GFile(path, "rb") as f:
        assert f.read() == b"new"
    assert tf.io.gfile.listdir(folder) == ["report.json"]
