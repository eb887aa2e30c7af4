"""The Beam pipeline end to end on real drawings (DirectRunner)."""
from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

import numpy as np
import orjson
import pytest

import tfrecord_schema as schema
from pipeline import run as run_lib
from pipeline.parse import parse_line
from pipeline_helpers import (BAD_LINES, CAPS, CLASSLESS, make_mixed_input, read_split, real_files,
                              to_raw_format)

COUNTS = ["--train_observations_per_class=15", "--eval_observations_per_class=5",
          "--test_observations_per_class=3", "--output_shards=3"]


def run_pipeline(input_dir, output, *extra):
    return run_lib.run(["--input=%s" % input_dir, "--output=%s" % output, *COUNTS, *CAPS, *extra])


def digests(output: Path) -> dict:
    names = sorted(glob.glob(str(output / "*.tfrecord-*"))) + [str(output / schema.CLASSES_FILE)]
    return {Path(n).name: hashlib.sha256(Path(n).read_bytes()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, real_sample):
    root = tmp_path_factory.mktemp("mixed")
    input_dir = make_mixed_input(real_sample, root / "input")
    output = root / "out"
    runners = []

    def launch_runner(options):
        runners.append(real_launch_runner(options))
        return runners[-1]

    real_launch_runner = run_lib.launch_runner
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_lib, "launch_runner", launch_runner)
        stats = run_pipeline(input_dir, output, "--skip_transform")
    return input_dir, output, stats, runners


def test_local_runs_never_go_to_prism(mixed):
    """Beam's DirectRunner would try its Prism runner first (a download when
    online); the job runs on the FnApiRunner that the options configure."""
    from pipeline.beam_internals import LocalRunner
    assert [type(r) for r in mixed[3]] == [LocalRunner]
    for runner in ("DirectRunner", "direct", "apache_beam.runners.direct.direct_runner.DirectRunner"):
        assert isinstance(run_lib.local_runner(run_lib.PipelineOptions(["--runner=" + runner])), LocalRunner)
    assert run_lib.local_runner(run_lib.PipelineOptions(["--runner=DataflowRunner"])) is None
    assert run_lib.local_runner(run_lib.PipelineOptions(["--runner=BundleBasedDirectRunner"])) is None


def test_outputs_follow_the_tutorial_layout(mixed):
    _, output, _, _ = mixed
    names = {p.name for p in output.iterdir()}
    for split in (schema.TRAIN, schema.EVAL, schema.TEST):
        assert {schema.shard_name(split, i, 3) for i in range(3)} <= names
    assert {schema.CLASSES_FILE, schema.STATS_FILE, "rejects-00000-of-00001.ndjson"} <= names
    assert not [n for n in names if n.startswith(".tmp")]


def test_counts_are_right_and_reconcile(mixed):
    _, output, stats, _ = mixed
    assert json.loads((output / schema.STATS_FILE).read_text()) == stats
    classes = stats["classes"]
    assert len(classes) == 13  # 12 real files + crab from the file of bad lines
    for word, c in classes.items():
        rest = sum(c["selected"].values()) + c["unselected"] + c["filtered"] + sum(c["rejected"].values())
        assert rest == c["read"], word
        if word != "crab":
            assert c["read"] == 25
            assert c["selected"] == {"train": 15, "eval": 5, "test": 3} and c["unselected"] == 2
    crab = classes["crab"]
    assert crab["selected"] == {"train": 1, "eval": 0, "test": 0}
    t = stats["totals"]
    assert t["read"] == 12 * 25 + len(BAD_LINES) + 2
    assert t["read"] == sum(t["selected"].values()) + t["unselected"] + t["filtered"] + sum(t["rejected"].values())
    expected_reasons = {reason: 1 for _, reason in BAD_LINES}
    expected_reasons["blank_line"] = 1
    assert t["rejected"] == expected_reasons
    assert crab["rejected"] == {r: 1 for _, r in BAD_LINES if r not in CLASSLESS}


def test_rejects_name_file_line_reason_and_text(mixed):
    input_dir, output, _, _ = mixed
    rejects = [json.loads(l) for p in sorted(output.glob("rejects-*.ndjson"))
               for l in p.read_text().splitlines()]
    by_reason = {r["reason"]: r for r in rejects}
    assert len(rejects) == len(BAD_LINES)
    for i, (line, reason) in enumerate(BAD_LINES):
        r = by_reason[reason]
        assert r["file"].endswith("broken.ndjson") and r["line"] == i + 1
        # Cut to at most 10,000 bytes as JSON writes it: a quote takes two.
        assert line.startswith(r["text"]) and len(orjson.dumps(r["text"])) - 2 <= 10_000
        assert r.get("truncated", False) == (r["text"] != line)
        assert r["text"] == line or len(orjson.dumps(line[:len(r["text"]) + 1])) - 2 > 10_000
    # The blank line is counted, not written.
    stats = json.loads((output / "stats.json").read_text())
    assert stats["rejects_left_out"] == {str(input_dir / "broken.ndjson"): 1}


def test_splits_are_disjoint_and_ink_matches_parse_line(mixed, real_sample):
    import tensorflow as tf
    input_dir, output, _, _ = mixed
    names = (output / schema.CLASSES_FILE).read_text().splitlines()
    assert names == sorted(names) and len(names) == 13
    originals = {}
    for path in glob.glob(str(real_sample / "*.ndjson")):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            originals[json.loads(line)["key_id"]] = line
    raw_class = real_files(real_sample, 12)[1].stem
    seen = {}
    for split in (schema.TRAIN, schema.EVAL, schema.TEST):
        records = read_split(tf, output, split)
        for r in records:
            key = str(r[schema.KEY_ID][0])
            assert key not in seen, "drawing in two splits"
            seen[key] = split
            word = r[schema.WORD][0].decode()
            assert names[r[schema.CLASS_INDEX][0]] == word
            line = originals[key]
            ink, _ = parse_line(to_raw_format(line) if word == raw_class else line)
            assert list(r[schema.SHAPE]) == [len(ink), 3]
            assert r[schema.INK].reshape(-1, 3).tobytes() == ink.tobytes()
        classes_in_split = {r[schema.WORD][0] for r in records}
        assert len(classes_in_split) == (13 if split == schema.TRAIN else 12)
    assert len(seen) == 12 * 23 + 1


def test_records_are_shuffled_across_classes(mixed):
    import tensorflow as tf
    _, output, _, _ = mixed
    words = [r[schema.WORD][0] for r in read_split(tf, output, schema.TRAIN)]
    switches = sum(a != b for a, b in zip(words, words[1:]))
    assert switches > len(words) * 0.7


@pytest.mark.slow
def test_reruns_are_byte_identical_whatever_the_parallelism(mixed, tmp_path):
    input_dir, output, _, _ = mixed
    again = tmp_path / "two_workers"
    run_pipeline(input_dir, again, "--skip_transform", "--direct_num_workers=2",
                 "--direct_running_mode=multi_processing")
    assert digests(again) == digests(output)
    other_seed = tmp_path / "seed"
    run_pipeline(input_dir, other_seed, "--skip_transform", "--seed=7")
    assert digests(other_seed) != digests(output)


def test_options_classes_recognized_only_and_tutorial_aliases(tmp_path, real_sample):
    out = tmp_path / "out"
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    stats = run_lib.run(["--ndjson_path=%s" % real_sample, "--output_path=%s" % out,
                         "--classes=%s" % (tmp_path / "classes.txt"), "--recognized_only",
                         "--train_observations_per_class=100", "--eval_observations_per_class=0",
                         "--output_shards=2", "--skip_transform"])
    assert sorted(stats["classes"]) == ["cat", "dog"]
    for c in stats["classes"].values():
        assert c["filtered"] + c["selected"]["train"] == 25 and c["filtered"] > 0
    assert (out / schema.CLASSES_FILE).read_text() == "cat\ndog\n"
    assert not list(out.glob("eval.tfrecord-*"))
    # A re-run with fewer shards leaves no stale shard behind.
    run_lib.run(["--input=%s" % real_sample, "--output=%s" % out, "--classes=cat,dog",
                 "--train_observations_per_class=5", "--eval_observations_per_class=0",
                 "--output_shards=1", "--skip_transform"])
    assert sorted(p.name for p in out.glob("training.tfrecord-*")) == ["training.tfrecord-00000-of-00001"]


def test_clear_errors_for_bad_options(tmp_path):
    with pytest.raises(run_lib.PipelineError, match="matches no file"):
        run_lib.run(["--input=%s/nothing*.ndjson" % tmp_path, "--output=%s" % tmp_path])
    with pytest.raises(run_lib.PipelineError, match="nothing to select"):
        run_lib.run(["--output=%s" % tmp_path, "--train_observations_per_class=0",
                     "--eval_observations_per_class=0"])
    assert run_lib.main(["--input=%s/none.ndjson" % tmp_path, "--output=%s" % tmp_path]) == 2
    (tmp_path / "bad.ndjson").write_text('{"word": "cat"}\nnot json\n')
    with pytest.raises(run_lib.PipelineError, match="no drawing was selected"):
        run_lib.run(["--input=%s/bad.ndjson" % tmp_path, "--output=%s/out" % tmp_path, "--skip_transform"])
    stats = json.loads((tmp_path / "out" / schema.STATS_FILE).read_text())
    assert stats["totals"]["rejected"] == {"invalid_json": 1, "missing_drawing": 1}


@pytest.mark.slow
def test_transform_graph_gives_parse_line_ink_and_length_stats(tmp_path, real_sample, real_lines):
    import tensorflow as tf
    import tensorflow_transform as tft

    from ndjson_format import check_line
    out = tmp_path / "out"
    run_lib.run(["--input=%s" % real_sample, "--output=%s" % out, "--classes=cat,dog,fish,tree",
                 "--train_observations_per_class=20", "--eval_observations_per_class=5"])
    stats = json.loads((out / schema.LENGTH_STATS_FILE).read_text())
    lengths = [len(parse_line(l)[0]) for l in real_lines
               if json.loads(l)["word"] in ("cat", "dog", "fish", "tree")]
    assert stats["num_examples"] == 80
    assert min(lengths) <= stats["min"] <= stats["mean"] <= stats["max"] <= max(lengths)
    assert stats["boundaries"] == sorted(stats["boundaries"]) and len(stats["boundaries"]) >= 5
    vocab = (out / schema.TRANSFORM_DIR / "transform_fn" / "assets" / "class_vocabulary").read_text()
    counts, words = zip(*(line.split(" ", 1) for line in vocab.splitlines()))
    assert list(words) == (out / schema.CLASSES_FILE).read_text().split() == ["cat", "dog", "fish", "tree"]
    assert counts == ("20",) * 4

    output = tft.TFTransformOutput(str(out / schema.TRANSFORM_DIR))
    lines = real_lines[::8]
    points = [check_line(l).points for l in lines]
    def sparse(col):
        idx = [[i, j] for i, p in enumerate(points) for j in range(len(p))]
        vals = np.concatenate([p[:, col] for p in points])
        return tf.SparseTensor(idx, vals, [len(points), max(len(p) for p in points)])
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        result = output.transform_raw_features({
            schema.RAW_X: sparse(0), schema.RAW_Y: sparse(1), schema.RAW_STROKE_END: sparse(2),
            schema.WORD: tf.constant([b"cat"] * len(points))})
        session.run(tf.compat.v1.tables_initializer())
        ink, length = session.run([tf.sparse.to_dense(result[schema.INK]), result["length"]])
    for i, line in enumerate(lines):
        expected, _ = parse_line(line)
        assert length[i] == len(expected)
        np.testing.assert_allclose(ink[i, :len(expected) * 3].reshape(-1, 3), expected, atol=1e-6)


@pytest.mark.slow
def test_portable_runner_path_used_by_flink(tmp_path, bundled_sample):
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % bundled_sample, "--output=%s" % out,
                         "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK",
                         "--train_observations_per_class=10", "--eval_observations_per_class=5",
                         "--output_shards=2", "--skip_transform"])
    assert stats["totals"]["selected"] == {"train": 200, "eval": 100, "test": 0}
    assert len(list(out.glob("training.tfrecord-*"))) == 2


def test_raster_option_stores_the_notebook_image(tmp_path, real_sample):
    import tensorflow as tf

    from pipeline.raster import rasterize
    out = tmp_path / "out"
    run_lib.run(["--input=%s" % real_sample, "--output=%s" % out, "--classes=cat,house", "--raster",
                 "--train_observations_per_class=4", "--eval_observations_per_class=0",
                 "--output_shards=1", "--skip_transform"])
    originals = {}
    for word in ("cat", "house"):
        for line in (real_sample / (word + ".ndjson")).read_text().splitlines():
            d = json.loads(line)
            originals[int(d["key_id"])] = d["drawing"]
    spec = dict(schema.feature_spec(tf, with_metadata=True))
    spec[schema.IMG_64] = tf.io.FixedLenFeature([schema.IMG_SIZE ** 2], tf.int64)
    files = sorted(str(p) for p in out.glob("training.tfrecord-*"))
    n = 0
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        img = ex[schema.IMG_64].numpy().reshape(schema.IMG_SIZE, schema.IMG_SIZE)
        strokes = [(np.array(s[0]), np.array(s[1])) for s in originals[int(ex[schema.KEY_ID][0])]]
        assert (img == rasterize(strokes)).all() and img.max() == 255
        n += 1
    assert n == 8


def test_growing_input_never_moves_an_eval_drawing_into_train(tmp_path, real_sample):
    import tensorflow as tf
    small = tmp_path / "small"
    small.mkdir()
    for word in ("cat", "dog", "fish"):
        lines = (real_sample / (word + ".ndjson")).read_text().splitlines()
        (small / (word + ".ndjson")).write_text("\n".join(lines[:12]) + "\n")
    flags = ["--train_observations_per_class=6", "--eval_observations_per_class=4",
             "--output_shards=1", "--skip_transform"]
    run_lib.run(["--input=%s" % small, "--output=%s" % (tmp_path / "v1"), *flags])
    run_lib.run(["--input=%s" % real_sample, "--output=%s" % (tmp_path / "v2"),
                 "--classes=cat,dog,fish", *flags])
    keys = {(v, s): {int(r[schema.KEY_ID][0]) for r in read_split(tf, tmp_path / v, s)}
            for v in ("v1", "v2") for s in (schema.TRAIN, schema.EVAL)}
    assert len(keys[("v1", schema.EVAL)]) == 12
    assert not keys[("v1", schema.EVAL)] & keys[("v2", schema.TRAIN)]
