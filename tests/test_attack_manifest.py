"""``dataset_manifest.verify`` on a damaged or hand-edited manifest.json: a
one-line ManifestError, never another exception."""
from __future__ import annotations

import json

import pytest

import dataset_manifest as dm
import tfrecord_schema as schema


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / schema.STATS_FILE).write_text("{}")
    (folder / schema.CLASSES_FILE).write_text("cat\n")
    dm.write_manifest(str(folder), {"counts": {}})
    assert dm.verify(str(folder))
    return folder


@pytest.mark.parametrize("entry", [5, None, "x", [1, 2]])
def test_a_file_entry_that_is_not_an_object_is_refused_in_one_line(dataset, entry):
    path = dataset / dm.MANIFEST_FILE
    doc = json.loads(path.read_text())
    doc["files"][schema.CLASSES_FILE] = entry
    path.write_text(json.dumps(doc))
    with pytest.raises(dm.ManifestError) as refused:
        dm.verify(str(dataset))
    assert "\n" not in str(refused.value)


def test_a_manifest_that_is_a_folder_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "ds"
    (folder / dm.MANIFEST_FILE).mkdir(parents=True)
    (folder / dm.MANIFEST_FILE / "x").write_text("{}")
    (folder / schema.STATS_FILE).write_text("{}")
    with pytest.raises(dm.ManifestError) as refused:
        dm.verify(str(folder))
    assert "\n" not in str(refused.value)


def verified_within(folder, seconds: float = 30):
    """verify(folder)'s outcome, run on a thread so that a reader stuck on a
    FIFO fails the test instead of hanging the suite."""
    import threading
    outcome = []

    def check():
        try:
            outcome.append(dm.verify(str(folder)))
        except Exception as e:  # noqa: BLE001 - the test looks at it
            outcome.append(e)
    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, "verify did not return within %g s" % seconds
    return outcome[0]


@pytest.mark.parametrize("make, kind", [
    (lambda p: __import__("os").mkfifo(p), "a FIFO"),
    (lambda p: __import__("os").symlink("/dev/zero", p), "a character device")])
@pytest.mark.parametrize("which", ["an empty shard", dm.MANIFEST_FILE])
def test_a_file_swapped_for_a_fifo_or_a_device_is_refused_not_read_forever(tmp_path, make, kind, which):
    """An empty shard (every expected shard is written, even empty) has the
    size a FIFO or /dev/zero reports: the checksum would then read it."""
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / schema.CLASSES_FILE).write_text("cat\n")
    empty = folder / schema.shard_name(schema.EVAL, 0, 1)
    empty.write_bytes(b"")
    dm.write_manifest(str(folder), {"counts": {}})
    target = empty if which == "an empty shard" else folder / dm.MANIFEST_FILE
    target.unlink()
    make(str(target))
    refused = verified_within(folder)
    assert isinstance(refused, dm.ManifestError), refused
    assert target.name in str(refused) and kind in str(refused) and "\n" not in str(refused)
