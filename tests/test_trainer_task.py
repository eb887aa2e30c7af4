"""End to end on real drawings: train a tiny model on tutorial-format records,
then check the report, the export, warm starts and the predict command."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfrecord_schema as schema
from pipeline.parse import parse_line
from trainer import task
from trainer.data import LENGTHS
from trainer.errors import TrainerError
from trainer.evaluate import evaluate_saved_model
from trainer.export import INK_SIGNATURE, RAW_SIGNATURE, load_export
from trainer.model import ModelConfig, build_model
from trainer.predict import Predictor, drawing_points, predict_lines
from trainer_helpers import BUNDLED_SAMPLE, REPO, TINY_MODEL, data_flags, read_drawings, \
    write_tutorial_dataset

CLASSES = ["cat", "moon", "ladder", "umbrella"]
METRIC_KEYS = {"loss", "accuracy", "top3_accuracy", "map3", "global_step", "num_examples",
               "per_class"}


def train_flags(paths: dict, model_dir, steps: int, *extra: str) -> list[str]:
    return data_flags(paths) + TINY_MODEL + [
        "--model_dir=%s" % model_dir, "--steps=%d" % steps, "--batch_size=8", "--seed=3",
        "--learning_rate=0.003", "--log_every_steps=10", "--eval_every_steps=20",
        "--checkpoint_every_steps=10", *extra]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_run")
    paths = write_tutorial_dataset(root / "data", CLASSES)
    model_dir = root / "model"
    metrics = task.main(train_flags(paths, model_dir, 30))
    return {"paths": paths, "model_dir": model_dir, "metrics": metrics, "root": root}


def test_main_returns_metrics_and_writes_report(run):
    metrics, model_dir = run["metrics"], run["model_dir"]
    assert METRIC_KEYS <= set(metrics)
    assert metrics["global_step"] == 30
    assert metrics["num_examples"] == 5 * len(CLASSES)
    assert set(metrics["per_class"]) == set(CLASSES)
    assert 0.0 <= metrics["accuracy"] <= metrics["top3_accuracy"] <= 1.0
    assert metrics["accuracy"] <= metrics["map3"] <= metrics["top3_accuracy"]
    report = json.loads((model_dir / "eval_report.json").read_text())
    assert report == json.loads(json.dumps(metrics))
    assert (model_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-30")
    eval_tags = {(value.tag, event.step)
                 for events in (model_dir / "eval").iterdir()
                 for event in tf.compat.v1.train.summary_iterator(str(events))
                 for value in event.summary.value
                 if value.metadata.plugin_data.plugin_name == "scalars"}
    for tag in ("loss", "accuracy", "top3_accuracy", "map3"):
        assert {(tag, 20), (tag, 30)} <= eval_tags
    assert list((model_dir / "train").iterdir())


def test_export_agrees_with_trained_model_on_eval_set(run):
    export_dir = str(run["model_dir"] / "export")
    exported = evaluate_saved_model(export_dir, run["paths"]["eval_data"],
                                    run["paths"]["classes_file"], batch_size=7)
    for key in ("accuracy", "top3_accuracy", "map3", "num_examples", "global_step"):
        assert exported[key] == run["metrics"][key], key
    assert exported["loss"] == pytest.approx(run["metrics"]["loss"], abs=1e-5)
    assert exported["per_class"] == run["metrics"]["per_class"]

    # Checkpoint model on parse_line's ink == export's raw-strokes signature.
    config = ModelConfig.from_dict(json.loads((run["model_dir"] / "model_config.json").read_text()))
    model = build_model(config)
    tf.train.Checkpoint(model=model).read(
        tf.train.latest_checkpoint(str(run["model_dir"]))).expect_partial()
    lines = [line for lines in read_drawings(BUNDLED_SAMPLE, CLASSES).values()
             for line in lines[20:25]]
    inks = [parse_line(line)[0] for line in lines]
    n = max(len(i) for i in inks)
    padded = np.zeros((len(inks), n, 3), np.float32)
    for i, ink in enumerate(inks):
        padded[i, :len(ink)] = ink
    lengths = np.array([len(i) for i in inks], np.int32)
    # The export serves calibrated probabilities: the logits over the fitted temperature.
    temperature = run["metrics"]["temperature"]
    logits = model({schema.INK: padded, LENGTHS: lengths})
    want = tf.nn.softmax(logits / temperature).numpy()
    got = Predictor(export_dir).probabilities([drawing_points(json.loads(line)) for line in lines])
    np.testing.assert_allclose(got, want, atol=1e-5)
    loaded, classes = load_export(export_dir)
    assert classes == CLASSES
    ink_out = loaded.signatures[INK_SIGNATURE](ink=tf.constant(padded), lengths=tf.constant(lengths))
    np.testing.assert_allclose(ink_out["probabilities"].numpy(), want, atol=1e-5)
    assert RAW_SIGNATURE in loaded.signatures


def test_report_has_calibration_and_the_export_its_temperature(run):
    metrics = run["metrics"]
    for key in ("ece", "ece_uncalibrated", "ece_cross_fitted", "loss_calibrated",
                "confident_wrong", "reliability"):
        assert key in metrics, key
    assert metrics["temperature"] != 1.0 and 0 <= metrics["ece"] <= 1
    assert (run["model_dir"] / "reliability_diagram.png").read_bytes().startswith(b"\x89PNG")
    loaded, _ = load_export(str(run["model_dir"] / "export"))
    assert float(loaded.temperature.numpy()) == pytest.approx(metrics["temperature"])


@pytest.mark.slow
def test_main_again_resumes_and_continues(run, tmp_path):
    model_dir = tmp_path / "model"
    first = task.main(train_flags(run["paths"], model_dir, 10, "--eval_every_steps=0"))
    second = task.main(train_flags(run["paths"], model_dir, 20, "--eval_every_steps=0"))
    assert (first["global_step"], second["global_step"]) == (10, 20)
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-20")


@pytest.mark.slow
def test_warm_start_from_checkpoint_and_export(run, tmp_path):
    for source in (run["model_dir"], run["model_dir"] / "export"):
        out = tmp_path / source.name
        metrics = task.main(train_flags(run["paths"], out, 1, "--learning_rate=1e-9",
                                        "--warm_start_from=%s" % source))
        assert metrics["global_step"] == 1
        # One negligible step from the warm start: the same predictions as the source.
        assert metrics["accuracy"] == run["metrics"]["accuracy"]
        assert metrics["loss"] == pytest.approx(run["metrics"]["loss"], abs=1e-3)


def test_warm_start_with_other_classes_is_refused(run, tmp_path):
    paths = write_tutorial_dataset(tmp_path / "data", CLASSES[:3], train_per_class=3,
                                   eval_per_class=2)
    with pytest.raises(TrainerError, match="3 classes|4 classes"):
        task.main(train_flags(paths, tmp_path / "m", 1,
                              "--warm_start_from=%s" % run["model_dir"]))


@pytest.mark.slow
def test_predict_command_top_k_and_game_rule(run, tmp_path):
    export_dir = str(run["model_dir"] / "export")
    predictor = Predictor(export_dir)
    lines = (BUNDLED_SAMPLE / "moon.ndjson").read_text().splitlines()[20:23]
    out, err = io.StringIO(), io.StringIO()
    done, rejected = predict_lines(predictor, lines + ["{bad", '{"drawing": [[[1], [2]]]}'],
                                   top_k=2, target="moon", threshold=0.0, out=out, err=err)
    assert (done, rejected) == (3, 2)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    answers = [r for r in records if "error" not in r]
    assert [(r["line"], r["error"]) for r in records if "error" in r] == [
        (4, "invalid_json"), (5, "single_point")]
    for answer in answers:
        assert answer["word"] == "moon" and len(answer["top_k"]) == 2
        assert answer["top_k"][0]["score"] >= answer["top_k"][1]["score"]
        assert answer["accepted"] is True  # any score is above 0
    assert "3 drawings predicted, 2 lines rejected" in err.getvalue()
    out = io.StringIO()
    predict_lines(predictor, lines[:1], target="moon", threshold=1.0, out=out, err=err)
    assert json.loads(out.getvalue())["accepted"] is False

    drawings = tmp_path / "in.ndjson"
    drawings.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "trainer.predict", "--model=%s" % export_dir,
                           "--input=%s" % drawings, "--top_k=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [len(json.loads(l)["top_k"]) for l in proc.stdout.splitlines()] == [1, 1, 1]
    proc = subprocess.run([sys.executable, "-m", "trainer.predict", "--model=%s" % export_dir,
                           "--target=dragon"], input=lines[0], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown --target 'dragon'")


@pytest.mark.slow
def test_mixed_precision_with_batch_norm_trains_and_exports(run, tmp_path):
    metrics = task.main(train_flags(run["paths"], tmp_path / "m", 4, "--mixed_precision=true",
                                    "--batch_norm", "--eval_every_steps=0"))
    assert metrics["global_step"] == 4 and np.isfinite(metrics["loss"])
    exported = evaluate_saved_model(str(tmp_path / "m" / "export"), run["paths"]["eval_data"],
                                    run["paths"]["classes_file"])
    assert exported["accuracy"] == metrics["accuracy"]
    assert exported["loss"] == pytest.approx(metrics["loss"], abs=1e-2)  # float16 vs float32


REQUIRED = ["--training_data=t", "--eval_data=e", "--classes_file=c", "--model_dir=m"]


@pytest.mark.parametrize("flag, message", [
    ("--learning_rate=nan", "--learning_rate must be a finite number (float32), not nan"),
    ("--learning_rate=inf", "--learning_rate must be a finite number (float32), not inf"),
    ("--learning_rate=1e39", "--learning_rate must be a finite number (float32), not 1e+39"),
    ("--learning_rate=0", "--learning_rate must be positive"),
    ("--gradient_clipping_norm=nan", "--gradient_clipping_norm must be a finite number"),
    ("--gradient_clipping_norm=-1", "--gradient_clipping_norm must be positive, or 0"),
    ("--dropout=1", "--dropout must be in [0, 1)"),
    ("--label_smoothing=-inf", "--label_smoothing must be a finite number"),
    ("--augment_rotation=inf", "--augment_rotation must be a finite number"),
    ("--augment_rotation=181", "--augment_rotation must be in [0, 180]"),
    ("--augment_shear=1e38", "--augment_shear must be in [0, 10]"),
    ("--augment_jitter=2", "--augment_jitter must be in [0, 1]"),
    ("--seed=-1", "--seed must be in [0, 2**32)"),
    ("--seed=4294967296", "--seed must be in [0, 2**32)"),
    ("--steps=9223372036854775808", "--steps must fit in 64 bits (below 2**63)"),
    ("--num_conv=8,9223372036854775808", "--num_conv must fit in 64 bits (below 2**63)"),
])
def test_a_number_flag_out_of_its_range_is_named(flag, message):
    args = task.build_parser().parse_args(REQUIRED + [flag])
    with pytest.raises(TrainerError) as error:
        task.validate(args)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_every_float_flag_refuses_nan_and_infinity():
    names = [a.option_strings[0] for a in task.build_parser()._actions if a.type is float]
    assert len(names) >= 10
    for name in names:
        for value in ("nan", "-inf", "4e38"):
            args = task.build_parser().parse_args(REQUIRED + ["%s=%s" % (name, value)])
            with pytest.raises(TrainerError, match="^%s must be a finite number" % name):
                task.validate(args)


def test_the_command_refuses_a_nan_learning_rate_in_one_line_before_training():
    proc = subprocess.run([sys.executable, "-m", "trainer.task", *REQUIRED, "--learning_rate=nan"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: --learning_rate")
    assert "nan" in proc.stderr
