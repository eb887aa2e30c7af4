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
