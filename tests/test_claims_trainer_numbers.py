"""docs/trainer.md from 'Calibration' on, and docs/benchmarks.md: the numbers
the code fixes. The temperature grid (0.05 to 20, 5% apart), ECE's 15 bins,
the cross-fitted halves; records parsed 256 at a time; the tail boundaries in
25% steps; the first 64 records of every file checked; 64 skipped steps; the
demo's recipe; the benchmarks' settings the docs give."""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from sample_paths import REPO


def test_the_temperature_grid_runs_from_0_05_to_20_5_percent_apart():
    """docs/trainer.md:331-332: the T of a grid from 0.05 to 20 (5% apart)."""
    from trainer.calibration import GRID
    assert GRID[0] == pytest.approx(0.05) and GRID[-1] == pytest.approx(20.0)
    steps = GRID[1:] / GRID[:-1]
    assert np.allclose(steps, steps[0]) and 1.045 < steps[0] < 1.055
    assert 1.0 in GRID  # T = 1 itself is scored (the uncalibrated figures)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits, labels, t):
    p = _softmax(logits / t)
    return -np.log(p[np.arange(len(labels)), labels]).sum()


def _ece(logits, labels, temps, bins=15):
    """ECE: equal bins of top-1 probability, |accuracy - probability| weighted by each bin's share."""
    gap = np.zeros(bins)
    for z, y, t in zip(logits, labels, temps):
        p = _softmax(z[None] / t)[0]
        b = min(int(p.max() * bins), bins - 1)
        gap[b] += float(np.argmax(z) == y) - p.max()
    return np.abs(gap).sum() / len(labels)


def test_ece_of_15_bins_and_each_half_scored_at_the_temperature_fitted_on_the_other():
    """docs/trainer.md:334-340: ECE of 15 equal bins of top-1 probability;
    the eval examples are split alternately in two halves, each scored at
    the T fitted on the other (`ece_cross_fitted`)."""
    from trainer.calibration import BINS, GRID, CalibrationStats
    assert BINS == 15
    rng = np.random.default_rng(3)
    n, classes = 399, 6
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    logits[0::2] *= 4.0  # the two halves want different temperatures
    stats = CalibrationStats()
    for start in range(0, n, 7):  # batches of an odd size: the halves alternate across them
        stats.update(logits[start:start + 7], labels[start:start + 7])
    result = stats.result()

    fitted = [GRID[int(np.argmin([_nll(logits[h::2], labels[h::2], t) for t in GRID]))] for h in (0, 1)]
    assert fitted[0] != fitted[1]
    cross = np.where(np.arange(n) % 2 == 0, fitted[1], fitted[0])
    same = np.where(np.arange(n) % 2 == 0, fitted[0], fitted[1])
    assert result["ece_cross_fitted"] == pytest.approx(_ece(logits, labels, cross), abs=1e-4)
    assert abs(_ece(logits, labels, cross) - _ece(logits, labels, same)) > 0.01
    overall = GRID[int(np.argmin([_nll(logits, labels, t) for t in GRID]))]
    assert result["temperature"] == pytest.approx(overall)
    assert result["ece"] == pytest.approx(_ece(logits, labels, np.full(n, overall)), abs=1e-4)
    assert result["ece_uncalibrated"] == pytest.approx(_ece(logits, labels, np.ones(n)), abs=1e-4)


def test_records_parsed_256_at_a_time_and_the_tail_in_25_percent_steps():
    """docs/trainer.md:367-372: parsed 256 records at a time; the tail above
    the last quantile split further in 25% steps up to the longest drawing;
    without the statistics, boundaries from 12 to 100 points."""
    from trainer import data
    assert data.PARSE_BATCH == 256
    assert data.extend_tail([10, 20, 40], 100) == [10, 20, 40, 51, 64, 81]
    default = data.length_boundaries(str(REPO / "no-such-folder" / "training.tfrecord-*"))
    assert default[:len(data.DEFAULT_BOUNDARIES)] == list(data.DEFAULT_BOUNDARIES)
    assert (data.DEFAULT_BOUNDARIES[0], data.DEFAULT_BOUNDARIES[-1]) == (12, 100)


def test_the_last_bucket_is_sized_for_drawings_25_percent_past_its_lower_boundary():
    """docs/trainer.md:374-381: each bucket's batch size is the budget divided
    by its longest length, the last, open-ended one sized for drawings up to
    25% beyond its lower boundary, capped by --batch_size."""
    from trainer import data
    assert data.bucket_batch_sizes([100], 1000, 2000) == [2000 // 99, 2000 // 126]
    assert data.bucket_batch_sizes([100], 4, 2000) == [4, 4]


def _records(path, labels):
    import tensorflow as tf
    from trainer_helpers import tutorial_example
    with tf.io.TFRecordWriter(str(path)) as writer:
        for label in labels:
            ink = np.array([[0.1, 0.2, 0.0], [0.3, 0.1, 1.0]], np.float32)
            writer.write(tutorial_example(ink, label).SerializeToString())


def test_the_first_64_records_of_every_file_are_checked_before_step_0(tmp_path):
    """docs/trainer.md:392-397: the first 64 records of every training and
    eval file are read and checked (a later bad record is left to the input
    pipeline's checks)."""
    from trainer import data
    from trainer.errors import TrainerError
    _records(tmp_path / "late.tfrecord", [0] * 64 + [7])
    assert data.check_records([str(tmp_path / "late.tfrecord")], ["cat", "dog"]) == 64
    _records(tmp_path / "early.tfrecord", [0] * 63 + [7])
    with pytest.raises(TrainerError, match="class_index 7"):
        data.check_records([str(tmp_path / "late.tfrecord"), str(tmp_path / "early.tfrecord")], ["cat", "dog"])
    for module in ("train", "evaluate"):
        source = (REPO / "trainer" / (module + ".py")).read_text()
        calls = re.findall(r"data\.check_records\(([^)]*)\)", source)
        assert calls and all(c.count(",") == 1 for c in calls), (module, calls)  # the default: 64


def test_a_float16_overflow_that_persists_for_64_batches_stops_the_run():
    """docs/trainer.md:452-453: unless it persists for 64 batches."""
    from trainer import train
    assert train.MAX_SKIPPED_STEPS == 64


def test_the_demo_trains_the_cnn_recipe_for_500_steps():
    """docs/trainer.md:358-361: `--model=cnn --augment --label_smoothing=0.1
    --no_bucketing --batch_size=64 --learning_rate=0.003`, 500 steps."""
    script = (REPO / "scripts" / "demo.sh").read_text()
    command = script.split("-m trainer.task", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ").split()
    for flag in ("--model=cnn", "--augment", "--label_smoothing=0.1", "--no_bucketing",
                 "--batch_size=64", "--learning_rate=0.003", '--steps="$STEPS"'):
        assert flag in command, flag
    assert re.search(r"^STEPS=\$\{STEPS:-500\}$", script, re.M)


def _defaults(script: str) -> dict[str, object]:
    """``{flag: default}`` of a benchmark's ``add_argument`` calls, read from its source."""
    found = {}
    for node in ast.walk(ast.parse((REPO / "benchmarks" / script).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            keywords = {k.arg: k.value for k in node.keywords}
            if "default" in keywords and isinstance(node.args[0], ast.Constant):
                try:
                    found[node.args[0].value] = ast.literal_eval(keywords["default"])
                except ValueError:
                    pass
    return found


def _constants(script: str) -> dict[str, object]:
    values = {}
    for node in ast.parse((REPO / "benchmarks" / script).read_text()).body:
        if isinstance(node, ast.Assign):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = value
                elif isinstance(target, ast.Tuple):
                    values.update({t.id: v for t, v in zip(target.elts, value)})
    return values


def test_bench_trainer_settings():
    """docs/trainer.md:497-500 and docs/benchmarks.md:437-444: `--batch_tokens`
    default 2816 = 64 x 44, at most `--max_batch` 256 drawings; 60 timed
    steps after 15 warm-up steps."""
    d = _defaults("bench_trainer.py")
    assert d["--batch_tokens"] == 2816 == 64 * 44 and d["--max_batch"] == 256
    assert d["--steps"] == 60 and d["--warmup"] == 15


def test_bench_model_settings():
    """docs/trainer.md:346-350 and docs/benchmarks.md:486-508: 20 drawings a
    class to train on, 5 held out; batches of 32 (the CNN: 64); 120 CPU
    seconds a recipe on 344 classes, 25 on 20; the tutorial recipe
    `--num_layers=1 --num_nodes=64 --learning_rate=0.003`."""
    d, c = _defaults("bench_model.py"), _constants("bench_model.py")
    assert d["--budget"] == 120 and d["--demo_budget"] == 25
    assert (c["TRAIN_PER_CLASS"], c["HELD_OUT_PER_CLASS"]) == (20, 5) and c["BATCH"] == 32
    source = (REPO / "benchmarks" / "bench_model.py").read_text()
    assert 'RNN = dict(model="rnn", num_layers=1, num_nodes=64, learning_rate=0.003)' in source
    assert 'CNN = dict(model="cnn", learning_rate=0.003, bucketing=False, batch_size=64)' in source


def test_the_other_benchmarks_defaults():
    """docs/benchmarks.md:24 (344,000 drawings), :288 (5M blank + 1M bad
    lines), :330/:338 (30 rounds), :357-358 (1, 8 and 32 clients, 15 s)."""
    assert _defaults("bench_pipeline.py")["--drawings"] == 344_000
    expanding = _defaults("bench_expanding_input.py")
    assert (expanding["--blank"], expanding["--bad"]) == (5_000_000, 1_000_000)
    assert _defaults("bench_validator.py")["--rounds"] == 30
    serving = _defaults("bench_serving.py")
    assert serving["--clients"] == "1,8,32" and serving["--seconds"] == 15
