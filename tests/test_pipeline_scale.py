"""The bounded-memory data flow: composite transforms, duplicates, damaged
files, and output that depends on the drawings alone."""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import pickle
import random
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to, is_not_empty

import tfrecord_schema as schema
from pipeline import run as run_lib
from pipeline import sources
from pipeline import split as split_lib
from pipeline.encoding import EncodeSpills
from pipeline.planning import PlanClasses, _PlanTask, plan_group
from pipeline.reading import COUNTS, SPILLS, ReadDrawings, _write_ranks
from pipeline.writing import WriteShards
from pipeline_helpers import read_split

FLAGS = ["--train_observations_per_class=15", "--eval_observations_per_class=5",
         "--test_observations_per_class=3", "--output_shards=2", "--skip_transform"]


def lines_of(real_sample: Path, word: str) -> list[bytes]:
    return (real_sample / (word + ".ndjson")).read_bytes().splitlines()


def digests(output: Path) -> dict:
    names = sorted(glob.glob(str(output / "*.tfrecord-*"))) + [str(output / schema.CLASSES_FILE)]
    return {Path(n).name: hashlib.sha256(Path(n).read_bytes()).hexdigest() for n in names}


def key_ids(output: Path) -> list[int]:
    import tensorflow as tf
    return [int(r[schema.KEY_ID][0]) for s in schema.SPLITS for r in read_split(tf, output, s)]


# --- Composite transforms -----------------------------------------------------

def test_read_drawings_spills_candidates_and_emits_ranks(tmp_path, real_sample):
    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"\n".join(lines_of(real_sample, "cat")[:6] + [b"not json"]) + b"\n")
    units = sources.plan_units([str(path)], [path.stat().st_size])
    work = tmp_path / "work"
    with BeamTestPipeline() as p:
        read = p | ReadDrawings(units, str(work), 0, 4, 10000, 100000, False, None)
        words = read.ranks | "Words" >> beam.MapTuple(lambda task, section: (task, section[3]))
        assert_that(words, equal_to([(plan_group("cat"), (("cat", 4),))]))
        assert_that(read[SPILLS], equal_to([(0, str(work / "spill-000000"))]), label="Spills")
        # A bad line in a class file counts against that file's class (and its file's rejects).
        assert_that(read[COUNTS], equal_to([{("cat", "read"): 7, ("cat", "valid"): 6,
                                             ("cat", "rejected:invalid_json"): 1,
                                             (None, "rejected_lines:%s" % path): 1}]),
                    label="Counts")
    kept = pickle.loads((work / "spill-000000").read_bytes())
    assert [w for w, _ in kept] == ["cat"] and len(kept[0][1]) == 4


def test_plan_classes_combines_ranks_into_cut_offs(tmp_path):
    quota = split_lib.Quota(2, 1, 0)
    units = [{"cat": [(5, 50, 0, 0), (1, 10, 0, 9)], "dog": [(4, 40, 2, 0)]},
             {"cat": [(1, 10, 1, 0), (3, 30, 1, 7), (9, 90, 1, 8)]}]
    elements = [section for i, unit in enumerate(units) for section in _write_ranks(
        str(tmp_path / ("ranks-%d" % i)), {w: [(r,) for r in ranks] for w, ranks in unit.items()})]
    with BeamTestPipeline() as p:
        plans, counts = p | beam.Create(elements) | PlanClasses(quota)
        assert_that(plans, equal_to([{
            "cat": split_lib.ClassPlan(((schema.TRAIN, (3, 30, 1, 7)), (schema.EVAL, (5, 50, 0, 0))),
                                       frozenset({(1, 10, 1, 0)}), {"train": 2, "eval": 1, "test": 0}, 1),
            "dog": split_lib.ClassPlan(((schema.TRAIN, (4, 40, 2, 0)),), frozenset(),
                                       {"train": 1, "eval": 0, "test": 0}, 0),
        }]))
        assert_that(counts, equal_to([
            {("cat", "selected:train"): 2, ("cat", "selected:eval"): 1, ("cat", "selected:test"): 0,
             ("cat", "rejected:duplicate"): 1},
            {("dog", "selected:train"): 1, ("dog", "selected:eval"): 0, ("dog", "selected:test"): 0},
        ]), label="Counts")


def test_plan_task_cuts_a_class_back_as_its_sections_come_in(tmp_path):
    """More ranks than the task keeps at once, spread over 8 rank files, with
    copies of the lowest drawings in other files: the plan is the one made
    from all the ranks at once."""
    rng = random.Random(3)
    quota = split_lib.Quota(3, 1, 1)
    ranks = [(rng.getrandbits(64), rng.getrandbits(64), f, o) for f in range(6) for o in range(400)]
    ranks += [r[:2] + (r[2] + 10, r[3]) for r in sorted(ranks)[:4]]
    sections = [section for i in range(8) for _, section in _write_ranks(
        str(tmp_path / ("ranks-%d" % i)), {"cat": [(r,) for r in ranks[i::8]]})]
    [(word, plan)] = list(_PlanTask(quota).process((plan_group("cat"), sections)))
    assert word == "cat" and plan.duplicates == 4
    assert plan == split_lib.plan_class([r for r, in split_lib.keep_lowest([(r,) for r in ranks], quota.total)], quota)


@pytest.mark.slow
def test_encode_spills_and_write_shards_merge_sorted_sections(tmp_path, real_sample):
    quota = split_lib.Quota(3, 2, 0)
    files = []
    for word in ("cat", "dog"):
        files.append(str(tmp_path / (word + ".ndjson")))
        Path(files[-1]).write_bytes(b"\n".join(lines_of(real_sample, word)) + b"\n")
    units = sources.plan_units(files, [Path(f).stat().st_size for f in files], target=4000)
    assert len(units) > 2
    work, out = str(tmp_path / "work"), tmp_path / "out"
    with BeamTestPipeline() as p:
        read = p | ReadDrawings(units, work, 0, quota.total, 10000, 100000, False, None)
        plans, _ = read.ranks | PlanClasses(quota)
        sections, classes, _, _, _ = (read[SPILLS], plans) | EncodeSpills(work, 0, 2, False, False, files)
        written = sections | WriteShards(str(out), work, quota, 2)
        assert_that(classes, equal_to([["cat", "dog"]]))
        assert_that(written | beam.Map(lambda w: (w[0], Path(w[1]).name)), equal_to(
            [(s, schema.shard_name(s, i, 2)) for s in (schema.TRAIN, schema.EVAL) for i in (0, 1)]),
            label="Shards")
        assert_that(sections, is_not_empty(), label="Sections")
    import tensorflow as tf
    train = read_split(tf, out, schema.TRAIN)
    assert len(train) == 6 and len(read_split(tf, out, schema.EVAL)) == 4
    orders = [split_lib.shuffle_key(0, (split_lib.seeded_hash(0, b"rank", str(r[schema.KEY_ID][0]).encode()),))
              for r in read_split(tf, out, schema.TRAIN)]
    for shard in (0, 1):
        mine = [o for o in orders if o % 2 == shard]
        assert mine == sorted(mine)


# --- Duplicates ---------------------------------------------------------------

def test_duplicates_in_one_file_in_two_files_and_at_the_split_boundary(tmp_path, real_sample):
    folder = tmp_path / "in"
    folder.mkdir()
    cat = lines_of(real_sample, "cat")
    (folder / "cat.ndjson").write_bytes(b"\n".join(cat + cat) + b"\n")  # every drawing twice
    dog = lines_of(real_sample, "dog")
    (folder / "dog.ndjson").write_bytes(b"\n".join(dog) + b"\n")
    (folder / "dog.ndjson.gz").write_bytes(gzip.compress(b"\n".join(dog[:10]) + b"\n"))
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % folder, "--output=%s" % out, *FLAGS])
    keys = key_ids(out)
    assert len(keys) == len(set(keys)) == 2 * 23
    c, d = stats["classes"]["cat"], stats["classes"]["dog"]
    assert c["selected"] == d["selected"] == {"train": 15, "eval": 5, "test": 3}
    # Copies of the 23 selected drawings are duplicates; copies of the 2 others stay unselected.
    assert c["rejected"] == {"duplicate": 23} and c["unselected"] == 4
    assert d["read"] == 35 and d["rejected"]["duplicate"] + d["unselected"] == 12
    rejects = [json.loads(l) for p in out.glob("rejects-*.ndjson") for l in p.read_text().splitlines()]
    dup_cat = [r for r in rejects if r["file"].endswith("cat.ndjson")]
    assert len(dup_cat) == 23 and all(r["reason"] == "duplicate" and r["line"] > 25 for r in dup_cat)
    assert stats["totals"]["rejected"]["duplicate"] == 23 + d["rejected"]["duplicate"]


# --- Damaged files ------------------------------------------------------------

def test_damaged_files_are_reported_by_name_and_the_run_goes_on(tmp_path, real_sample, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for word in ("cat", "dog"):
        (folder / (word + ".ndjson")).write_bytes(b"\n".join(lines_of(real_sample, word)) + b"\n")
    many = b"\n".join(lines_of(real_sample, "fish") * 40) + b"\n"
    cut = gzip.compress(many)
    (folder / "fish.ndjson.gz").write_bytes(cut[: len(cut) // 2])
    bad = bytearray(gzip.compress(b"\n".join(lines_of(real_sample, "tree") * 40) + b"\n"))
    bad[len(bad) // 2: len(bad) // 2 + 64] = bytes(64)
    (folder / "tree.ndjson.gz").write_bytes(bytes(bad))
    (folder / "x.ndjson").mkdir()
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s,%s" % (folder, folder / "x.ndjson"), "--output=%s" % out, *FLAGS])
    assert stats["damaged_files"] == {
        str(folder / "fish.ndjson.gz"): sources.TRUNCATED_GZIP,
        str(folder / "tree.ndjson.gz"): sources.CORRUPT_GZIP,
        str(folder / "x.ndjson"): sources.IS_A_DIRECTORY,
    }
    assert 0 < stats["classes"]["fish"]["read"] < 40 * 25
    assert stats["classes"]["cat"]["selected"]["train"] == 15
    printed = capsys.readouterr().out
    assert "3 damaged input files" in printed and "fish.ndjson.gz: truncated_gzip" in printed


# --- Output depends on the drawings alone --------------------------------------

def _reshuffled_input(real_sample: Path, folder: Path, words) -> None:
    """The same drawings, lines in another order, spread over a plain and a gzip file."""
    folder.mkdir()
    rng = random.Random(5)
    for word in words:
        lines = lines_of(real_sample, word)
        rng.shuffle(lines)
        (folder / (word + ".ndjson")).write_bytes(b"\n".join(lines[:11]) + b"\n")
        (folder / (word + ".ndjson.gz")).write_bytes(gzip.compress(b"\n".join(lines[11:]) + b"\n"))


WORDS = ("cat", "dog", "fish", "tree", "house", "crab")


@pytest.mark.slow
def test_output_is_the_same_whatever_the_files_and_ranges(tmp_path, real_sample, monkeypatch):
    one = tmp_path / "one"
    one.mkdir()
    for word in WORDS:
        (one / (word + ".ndjson")).write_bytes(b"\n".join(lines_of(real_sample, word)) + b"\n")
    run_lib.run(["--input=%s" % one, "--output=%s" % (tmp_path / "a"), *FLAGS])
    _reshuffled_input(real_sample, tmp_path / "two", WORDS)
    monkeypatch.setattr(sources, "MIN_UNIT_BYTES", 3000)
    monkeypatch.setattr(sources, "UNITS_PER_JOB", 1000)
    run_lib.run(["--input=%s" % (tmp_path / "two"), "--output=%s" % (tmp_path / "b"), *FLAGS])
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".tmp")]


@pytest.mark.slow
def test_output_is_the_same_with_two_worker_processes_and_byte_ranges(tmp_path, real_sample, monkeypatch):
    _reshuffled_input(real_sample, tmp_path / "in", WORDS)
    run_lib.run(["--input=%s" % (tmp_path / "in"), "--output=%s" % (tmp_path / "a"), *FLAGS])
    monkeypatch.setattr(sources, "MIN_UNIT_BYTES", 3000)
    monkeypatch.setattr(sources, "UNITS_PER_JOB", 1000)
    run_lib.run(["--input=%s" % (tmp_path / "in"), "--output=%s" % (tmp_path / "b"), *FLAGS,
                 "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_rejects_from_byte_ranges_have_the_file_line_number(tmp_path, real_sample, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    cat = lines_of(real_sample, "cat") * 8
    cat[49] = b'{"word": "cat", "drawing": "strokes"}'
    cat[149] = b"not json"
    (folder / "cat.ndjson").write_bytes(b"\n".join(cat) + b"\n")
    monkeypatch.setattr(sources, "MIN_UNIT_BYTES", 5000)
    monkeypatch.setattr(sources, "UNITS_PER_JOB", 1000)
    assert len(sources.plan_units([str(folder / "cat.ndjson")], [(folder / "cat.ndjson").stat().st_size])) > 5
    out = tmp_path / "out"
    run_lib.run(["--input=%s" % folder, "--output=%s" % out, *FLAGS])
    rejects = sorted((r["line"], r["reason"]) for p in out.glob("rejects-*.ndjson")
                     for r in map(json.loads, p.read_text().splitlines()) if r["reason"] != "duplicate")
    assert [line for line, _ in rejects] == [50, 150]
