"""Model quality on real drawings: each training recipe within the same CPU time,
and the training loop's steps/s with and without several steps per call.

The drawings are the repo's real sample (``data/real_sample``: 344 classes x
25) and the demo's 20 classes (``data/sample``), split the same fixed way: the
first 20 drawings of each class file to train on, the last 5 held out. Each
recipe trains in a fresh process until it has used ``--budget`` CPU seconds
(``time.process_time``: all of the process's threads, so a busy shared
machine slows a run down without shortening it), then is scored on the
held-out drawings: top-1, top-3, MAP@3 and the expected calibration error
(ECE, 15 bins of top-1 probability), and how many held-out drawings got a
wrong class with probability above 0.9. Recipes with a temperature fit it
on the held-out drawings, as the trainer fits it on its eval split; their
ECE and confident mistakes are measured out of sample (each half of the
held-out drawings at the temperature fitted on the other half).

    python benchmarks/bench_model.py [--budget 120] [--demo_budget 25] [--json out.json]
    python benchmarks/bench_model.py --loop_only
    python benchmarks/bench_model.py --mosaic docs/augmentation.png
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO / "data" / "real_sample"
DEMO_SAMPLE = REPO / "data" / "sample"
TRAIN_PER_CLASS, HELD_OUT_PER_CLASS = 20, 5
# The demo's model and optimiser flags (scripts/demo.sh) are the tutorial recipe here.
RNN = dict(model="rnn", num_layers=1, num_nodes=64, learning_rate=0.003)
# Length buckets make batches of similar drawings; the CNN's images need no
# bucketing, and mixed batches train it faster. Its convolutions use a CPU
# better on batches of 64.
CNN = dict(model="cnn", learning_rate=0.003, bucketing=False, batch_size=64)
RECIPES = {
    "tutorial": dict(RNN, augment=False, label_smoothing=0.0, calibrate=False),
    "augmented": dict(RNN, augment=True, label_smoothing=0.0, calibrate=False),
    "calibrated": dict(RNN, augment=True, label_smoothing=0.1, calibrate=True),
    "cnn": dict(CNN, augment=True, label_smoothing=0.1, calibrate=True),
}
BATCH = 32
STEPS_PER_CALL = 10


def write_split(sample: Path, out_dir: str) -> dict:
    """Tutorial-format records of the fixed split, shuffled with seed 0."""
    import tensorflow as tf

    import tfrecord_schema as schema
    from pipeline.parse import parse_line

    files = sorted(sample.glob("*.ndjson"))
    classes = [f.stem for f in files]
    splits = {schema.TRAIN: [], schema.EVAL: []}
    for index, path in enumerate(files):
        lines = path.read_text().splitlines()
        splits[schema.TRAIN] += [(line, index) for line in lines[:TRAIN_PER_CLASS]]
        splits[schema.EVAL] += [(line, index) for line in
                                lines[TRAIN_PER_CLASS:TRAIN_PER_CLASS + HELD_OUT_PER_CLASS]]
    patterns = {}
    for split, items in splits.items():
        random.Random(0).shuffle(items)
        path = os.path.join(out_dir, schema.shard_name(split, 0, 1))
        with tf.io.TFRecordWriter(path) as writer:
            for line, index in items:
                ink, _ = parse_line(line)
                example = tf.train.Example()
                example.features.feature[schema.INK].float_list.value.extend(ink.flatten())
                example.features.feature[schema.SHAPE].int64_list.value.extend(ink.shape)
                example.features.feature[schema.CLASS_INDEX].int64_list.value.append(index)
                writer.write(example.SerializeToString())
        patterns[split] = path
    return {"training": patterns[schema.TRAIN], "eval": patterns[schema.EVAL],
            "classes": classes}


def train_recipe(split: dict, recipe: dict, budget: float, seed: int = 0) -> dict:
    """Trains one recipe for ``budget`` CPU seconds; held-out figures."""
    import keras
    import tensorflow as tf

    from trainer import data
    from trainer.augment import AugmentConfig
    from trainer.evaluate import run_eval
    from trainer.model import ModelConfig, build_model
    from trainer.train_step import make_optimizer, make_train_loop

    keras.utils.set_random_seed(seed)
    classes = split["classes"]
    config = ModelConfig(num_classes=len(classes), **{
        k: v for k, v in recipe.items() if k in ("model", "num_layers", "num_nodes", "dropout",
                                                 "raster_size", "cnn_filters", "cnn_dense")})
    raster_size = config.raster_size if config.model == "cnn" else None
    boundaries = (data.length_boundaries(split["training"]) if recipe.get("bucketing", True)
                  else None)
    start = time.process_time()
    wall = time.perf_counter()
    model = build_model(config)
    optimizer = make_optimizer(recipe["learning_rate"], False)
    loop = make_train_loop(tf.distribute.get_strategy(), model, optimizer, 9.0,
                           recipe["label_smoothing"])
    batches = data.make_dataset(split["training"], recipe.get("batch_size", BATCH), classes,
                                training=True,
                                boundaries=boundaries, seed=seed,
                                augment=AugmentConfig() if recipe["augment"] else None,
                                raster_size=raster_size)
    iterator = iter(batches)
    while time.process_time() - start < budget:
        loop(iterator, tf.constant(STEPS_PER_CALL))
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    steps = int(optimizer.iterations.numpy())
    held_out = data.make_dataset(split["eval"], 64, classes, training=False,
                                 boundaries=boundaries, raster_size=raster_size)
    metrics, _ = run_eval(tf.function(lambda f: model(f, training=False)), held_out, classes,
                          temperature=None if recipe["calibrate"] else 1.0)
    fitted = recipe["calibrate"]
    return {
        "steps": steps, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
        "top1": metrics["accuracy"], "top3": metrics["top3_accuracy"], "map3": metrics["map3"],
        "ece": metrics["ece_cross_fitted"] if fitted else metrics["ece_uncalibrated"],
        "ece_uncalibrated": metrics["ece_uncalibrated"],
        "temperature": metrics["temperature"],
        "confident_wrong": (metrics["confident_wrong_cross_fitted"] if fitted
                            else metrics["confident_wrong_uncalibrated"]),
        "held_out": metrics["num_examples"],
    }


def loop_rates(split: dict, steps: int, warmup: int, rounds: int = 3) -> dict:
    """Steps/s of the demo's model and of a tiny one (where the host's share of a
    step is largest): one step per call with the host reading every step's
    results (the loop before), against ``STEPS_PER_CALL`` steps per call. The
    contenders take turns, ``rounds`` times; the median is kept."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer import data
    from trainer.model import ModelConfig, build_model
    from trainer.train_step import make_optimizer, make_train_loop, make_train_step

    classes = split["classes"]
    boundaries = data.length_boundaries(split["training"])
    strategy = tf.distribute.get_strategy()
    sizes = {"demo model": dict(num_layers=1, num_nodes=64),
             "tiny model": dict(num_layers=1, num_nodes=16, num_conv=(8, 8), conv_len=(3, 3))}
    runs = {}
    for size, shape in sizes.items():
        for per_call in (1, STEPS_PER_CALL):
            keras.utils.set_random_seed(0)
            model = build_model(ModelConfig(num_classes=len(classes), **shape))
            optimizer = make_optimizer(0.003, False)
            iterator = iter(data.make_dataset(split["training"], BATCH, classes, training=True,
                                              boundaries=boundaries, seed=0))
            if per_call == 1:
                step = make_train_step(strategy, model, optimizer, 9.0)

                def run(count, step=step, iterator=iterator, optimizer=optimizer):
                    for _ in range(count):
                        [float(v) for v in step(next(iterator))]
                        int(optimizer.iterations.numpy())
            else:
                loop = make_train_loop(strategy, model, optimizer, 9.0)

                def run(count, loop=loop, iterator=iterator, optimizer=optimizer):
                    for _ in range(count // STEPS_PER_CALL):
                        [float(v) for v in loop(iterator, tf.constant(STEPS_PER_CALL))[:3]]
                        int(optimizer.iterations.numpy())
            run(warmup)
            runs["%s, %d step(s) per call" % (size, per_call)] = run
    rates = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            cpu, wall = time.process_time(), time.perf_counter()
            run(steps)
            rates[name].append((steps / (time.perf_counter() - wall),
                                steps / (time.process_time() - cpu)))
    return {name: {"steps_per_s": float(np.median([r[0] for r in values])),
                   "steps_per_cpu_s": float(np.median([r[1] for r in values]))}
            for name, values in rates.items()}


def augmentation_mosaic(path: str, classes=("cat", "bicycle", "house", "fish", "umbrella"),
                        variants: int = 7, cell: int = 110) -> None:
    """A PNG of real drawings (first column, as stored) and augmented copies of
    them (the trainer's default ``AugmentConfig``), drawn as quickdraw-render
    draws TFRecord ink."""
    import tensorflow as tf

    from pipeline.parse import parse_line
    from pipeline.drawing_readers import Drawing, ink_to_strokes
    from pipeline.render import mosaic
    from trainer.augment import AugmentConfig, augment_ink

    drawings = []
    for row, name in enumerate(classes):
        ink, _ = parse_line((DEMO_SAMPLE / ("%s.ndjson" % name)).read_text().splitlines()[0])
        drawings.append(Drawing(name, ink_to_strokes(ink)))
        for seed in range(variants):
            changed, _ = augment_ink(tf.constant(ink), len(ink),
                                     tf.constant([row, seed], tf.int64), AugmentConfig())
            drawings.append(Drawing("%s, seed %d" % (name, seed),
                                    ink_to_strokes(changed.numpy())))
    mosaic(drawings, len(classes), variants + 1, cell).save(path)


def child(argv: list[str]) -> None:
    """One measurement in this process; its JSON on the last stdout line."""
    kind, split_json, *rest = argv
    split = json.loads(split_json)
    if kind == "recipe":
        result = train_recipe(split, RECIPES[rest[0]], float(rest[1]))
    else:
        result = loop_rates(split, int(rest[0]), int(rest[1]))
    print("RESULT " + json.dumps(result), flush=True)


def in_child(*argv: str) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("RESULT ")][-1][7:])


def table(results: dict) -> str:
    rows = ["| recipe | steps | CPU s | top-1 | top-3 | MAP@3 | ECE | wrong at p > 0.9 |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append("| %s | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %d |"
                    % (name, r["steps"], r["cpu_s"], r["top1"], r["top3"], r["map3"], r["ece"],
                       r["confident_wrong"]))
    return "\n".join(rows)


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=120.0,
                   help="CPU seconds of training per recipe on the 344 classes")
    p.add_argument("--demo_budget", type=float, default=25.0,
                   help="CPU seconds of training per recipe on the demo's 20 classes (about "
                        "what the tutorial recipe's 600 steps take)")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--loop_steps", type=int, default=300)
    p.add_argument("--loop_only", action="store_true")
    p.add_argument("--skip_loop", action="store_true")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--mosaic", default=None,
                   help="only draw real drawings and augmented copies to this PNG")
    args = p.parse_args(argv)
    if args.mosaic:
        augmentation_mosaic(args.mosaic)
        return {}
    figures = {"cpu": _cpu_name(), "budget_cpu_s": args.budget,
               "demo_budget_cpu_s": args.demo_budget}
    with tempfile.TemporaryDirectory() as tmp:
        splits = {}
        for name, sample in (("real_344", REAL_SAMPLE), ("demo_20", DEMO_SAMPLE)):
            os.makedirs(os.path.join(tmp, name))
            splits[name] = json.dumps(write_split(sample, os.path.join(tmp, name)))
        if not args.skip_loop:
            figures["loop"] = in_child("loop", splits["demo_20"], str(args.loop_steps), "30")
            for name, rate in figures["loop"].items():
                print("loop, %s: %.1f steps/s (%.1f per CPU second)"
                      % (name, rate["steps_per_s"], rate["steps_per_cpu_s"]), flush=True)
        if not args.loop_only:
            for split, budget in (("real_344", args.budget), ("demo_20", args.demo_budget)):
                figures[split] = {}
                for recipe in args.recipes.split(","):
                    result = in_child("recipe", splits[split], recipe, str(budget))
                    figures[split][recipe] = result
                    print("%s, %s: %s" % (split, recipe, json.dumps(result)), flush=True)
                print(table(figures[split]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return figures


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return "%s x%d" % (names[0], len(names))
    except (OSError, IndexError):
        return "unknown"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main(sys.argv[1:])
