"""Runs whose bundles run more than once give the dataset of a run whose
bundles run once: a runner replays bundles (``--direct_runner_bundle_repeat``),
and retries a bundle that failed half way (the bundle-based DirectRunner
retries a failed bundle up to four times, as Dataflow does)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import dataset_manifest
import tfrecord_schema as schema
from pipeline import run as run_lib

pytestmark = pytest.mark.slow

FLAGS = ["--train_observations_per_class=15", "--eval_observations_per_class=5",
         "--test_observations_per_class=3", "--output_shards=2", "--direct_num_workers=1"]
SAVED_MODEL = "%s/transform_fn/saved_model.pb" % schema.TRANSFORM_DIR
# A rename onto one of these names is followed by a failure, once each: the
# bundle has written part of its files when it fails. Reading (a spill file,
# before its rank file), writing a shard, and publishing the transform output
# (tf.Transform's own step renames folders, this project's renames files).
FAIL_AFTER = ("spill-", "training.tfrecord-", "transformed_metadata", "saved_model.pb")


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def transformed(folder: Path, lines: list[str]) -> dict:
    """What the transform graph makes of ``lines``: every output, as arrays."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from ndjson_format import check_line
    points = [check_line(line).points for line in lines]

    def sparse(col):
        index = [[i, j] for i, p in enumerate(points) for j in range(len(p))]
        return tf.SparseTensor(index, np.concatenate([p[:, col] for p in points]),
                               [len(points), max(len(p) for p in points)])

    output = tft.TFTransformOutput(str(folder / schema.TRANSFORM_DIR))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        result = output.transform_raw_features({
            schema.RAW_X: sparse(0), schema.RAW_Y: sparse(1), schema.RAW_STROKE_END: sparse(2),
            schema.WORD: tf.constant([b"cat"] * len(points))})
        session.run(tf.compat.v1.tables_initializer())
        return session.run({k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
                            for k, v in result.items()})


def assert_same_dataset(folder: Path, reference: Path, lines: list[str]) -> None:
    """The same files; byte for byte but the transform graph (whose node names
    depend on what the process built before: it must transform ``lines`` the
    same) and the manifest (the same but the graph's entry and the code version); nothing left behind."""
    got, expected = files(folder), files(reference)
    assert sorted(got) == sorted(expected)
    assert not [rel for rel in got if ".tmp" in rel or "beam-temp" in rel]
    for rel in expected:
        if rel not in (SAVED_MODEL, dataset_manifest.MANIFEST_FILE):
            assert got[rel] == expected[rel], rel
    outputs, expected_outputs = transformed(folder, lines), transformed(reference, lines)
    assert sorted(outputs) == sorted(expected_outputs)
    for name in expected_outputs:
        assert np.array_equal(outputs[name], expected_outputs[name]), name
    manifests = [json.loads(f[dataset_manifest.MANIFEST_FILE]) for f in (got, expected)]
    for m in manifests:  # others commit to this repository while the tests run
        del m["files"][SAVED_MODEL], m["code_version"]
    assert manifests[0] == manifests[1]
    dataset_manifest.verify(str(folder))


@pytest.fixture(scope="module")
def sample_lines(bundled_sample) -> list[str]:
    return [line for p in sorted(bundled_sample.glob("*.ndjson"))
            for line in p.read_text(encoding="utf-8").splitlines()[:2]]


@pytest.fixture(scope="module")
def plain(tmp_path_factory, bundled_sample):
    out = tmp_path_factory.mktemp("plain") / "out"
    run_lib.run(["--input=%s" % bundled_sample, "--output=%s" % out, *FLAGS])
    assert (out / SAVED_MODEL).exists() and list(out.glob("test.tfrecord-*"))
    return out


def test_replayed_bundles_give_the_same_dataset(plain, tmp_path, bundled_sample, sample_lines):
    out = tmp_path / "out"
    run_lib.run(["--input=%s" % bundled_sample, "--output=%s" % out, *FLAGS,
                 "--direct_runner_bundle_repeat=1"])
    assert_same_dataset(out, plain, sample_lines)


def test_bundles_that_fail_half_way_are_retried_into_the_same_dataset(
        plain, tmp_path, bundled_sample, sample_lines, monkeypatch):
    import tensorflow as tf
    from apache_beam.io.filesystems import FileSystems

    markers = tmp_path / "failed"
    markers.mkdir()

    def fail_once_after(rename):
        def renamed(sources, destinations=None, *args, **kwargs):
            rename(sources, destinations, *args, **kwargs)
            for path in destinations if isinstance(destinations, list) else [destinations]:
                name = path.rstrip("/").rsplit("/", 1)[-1]
                point = next((p for p in FAIL_AFTER if name.startswith(p)), None)
                if point is None:
                    continue
                try:
                    os.close(os.open(markers / point, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                raise RuntimeError("failing once after writing %s" % path)
        return renamed

    monkeypatch.setattr(FileSystems, "rename", staticmethod(fail_once_after(FileSystems.rename)))
    monkeypatch.setattr(tf.io.gfile, "rename", fail_once_after(tf.io.gfile.rename))
    # And once in the middle of a shard, before its rename: the attempt leaves
    # its temporary file, which the retry's own does not replace.
    from pipeline import writing
    frame = writing.tfrecord_frame

    def fail_once_mid_shard(record):
        try:
            os.close(os.open(markers / "mid-shard", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return frame(record)
        raise RuntimeError("failing once in the middle of a shard")
    monkeypatch.setattr(writing, "tfrecord_frame", fail_once_mid_shard)
    out = tmp_path / "out"
    argv = ["--input=%s" % bundled_sample, "--output=%s" % out, *FLAGS,
            "--runner=BundleBasedDirectRunner"]
    run_lib.run(argv)
    assert {p.name for p in markers.iterdir()} >= {"spill-", "training.tfrecord-", "saved_model.pb", "mid-shard"}
    assert_same_dataset(out, plain, sample_lines)
