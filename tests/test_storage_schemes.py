"""Which storage a dataset may live on: local paths and gs:// are served
(their exclusive create and compare-and-swap are raced in
test_deploy_atomic_storage.py, the launcher's work on gs:// runs in
test_dataflow_job.py); every other scheme is refused in one line before
anything is written, never taken for a local folder named after it."""
from __future__ import annotations

import pytest

import atomic_storage
import dataset_manifest
from pipeline import run as run_lib

# Beam's own filesystems besides local and gs://, Azure's other names, and file://.
REFUSED = ["s3", "hdfs", "azfs", "az", "abfs", "file"]


@pytest.mark.parametrize("scheme", REFUSED)
def test_pipeline_refuses_the_output_in_one_line_and_writes_nothing(
        scheme, tmp_path, monkeypatch, capsys, real_sample):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    output = "%s://bucket/quickdraw/v1" % scheme
    status = run_lib.main(["--input=%s" % (real_sample / "cat.ndjson"), "--output=%s" % output,
                           "--skip_transform"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("error: --output=%s: %s:// is not served" % (output, scheme)), err
    assert list(work.iterdir()) == []
    with pytest.raises(run_lib.PipelineError, match="is not served"):
        run_lib.run(["--input=%s" % (real_sample / "cat.ndjson"), "--output=%s" % output])


@pytest.mark.parametrize("scheme", REFUSED)
def test_storage_layer_refuses_the_scheme(scheme, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = "%s://bucket/ds" % scheme
    path = folder + "/" + dataset_manifest.LOCK_FILE
    for call in (lambda: atomic_storage.create_exclusive(path, b"x"),
                 lambda: atomic_storage.read_versioned(path),
                 lambda: atomic_storage.compare_and_swap(path, None, b"x"),
                 lambda: atomic_storage.replace(path, b"x"),
                 lambda: atomic_storage.exists(path)):
        with pytest.raises(atomic_storage.UnsupportedStorage, match="%s:// is not served" % scheme):
            call()
    for call in (lambda: dataset_manifest.verify(folder), lambda: dataset_manifest.digest(folder),
                 lambda: dataset_manifest.invalidate(folder),
                 lambda: dataset_manifest.write_manifest(folder, {})):
        with pytest.raises(dataset_manifest.ManifestError) as e:
            call()
        assert str(e.value).startswith("%s: %s:// is not served" % (folder, scheme))
        assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheme", [s for s in REFUSED if s != "file"])
def test_tensorflow_cannot_open_the_refused_schemes(scheme):
    """The refusal's second reason: tf.Transform writes the transform graph and
    the trainer reads through tf.io.gfile, which has no such filesystem."""
    import tensorflow as tf
    with pytest.raises(tf.errors.UnimplementedError):
        tf.io.gfile.exists("%s://bucket/ds/manifest.json" % scheme)


def test_served_paths():
    for path in ("out/dataset", "/data/ds", "gs://bucket/ds", "out/a://b", "relative"):
        atomic_storage.check_served(path)
    assert [atomic_storage.scheme(p) for p in ("gs://b/o", "s3://b/o", "/x", "a/b://c")] == \
        ["gs", "s3", "", ""]
