"""One step counter (the optimizer's), precision changes on resume, and a
diverging run that never leaves a non-finite checkpoint or export behind."""
import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import task, train
from trainer.errors import TrainerError
from trainer.evaluate import write_json
from trainer_helpers import TINY_MODEL, data_flags, write_tutorial_dataset

CLASSES = ["cat", "moon", "ladder"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_tutorial_dataset(tmp_path_factory.mktemp("steps"), CLASSES,
                                  train_per_class=8, eval_per_class=2)


def flags(paths, model_dir, steps, *extra):
    return data_flags(paths) + TINY_MODEL + [
        "--model_dir=%s" % model_dir, "--steps=%d" % steps, "--batch_size=4", "--seed=0",
        "--checkpoint_every_steps=2", "--log_every_steps=1", "--eval_every_steps=0", *extra]


def stored_step(model_dir) -> tuple[int, int]:
    """(the latest checkpoint's number, the optimizer step it holds)."""
    latest = tf.train.latest_checkpoint(str(model_dir))
    step = tf.train.load_checkpoint(latest).get_tensor(
        "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")
    return int(latest.rsplit("-", 1)[1]), int(step)


@pytest.mark.slow
def test_skipped_mixed_precision_steps_do_not_make_the_count_drift(paths, tmp_path, monkeypatch,
                                                                    capsys):
    # A loss scale far too large: the first float16 gradients overflow and
    # loss scaling skips those updates until the scale has come down.
    monkeypatch.setattr(keras.optimizers, "LossScaleOptimizer",
                        functools.partial(keras.optimizers.LossScaleOptimizer,
                                          initial_scale=2.0 ** 40))
    model_dir = tmp_path / "m"
    metrics = task.main(flags(paths, model_dir, 6, "--mixed_precision=true"))
    out = capsys.readouterr().out
    assert "skipped by loss scaling" in out
    assert metrics["global_step"] == 6
    assert stored_step(model_dir) == (6, 6)
    task.main(flags(paths, model_dir, 8, "--mixed_precision=true"))
    out = capsys.readouterr().out
    assert "Resuming from %s at step 6" % (model_dir / "ckpt-6") in out
    logged = [int(line.split()[2].split("/")[0]) for line in out.splitlines()
              if line.startswith("train step")]
    assert logged == [7, 8]
    assert stored_step(model_dir) == (8, 8)


@pytest.mark.slow
def test_resume_with_the_other_precision(paths, tmp_path):
    model_dir = tmp_path / "m"
    assert task.main(flags(paths, model_dir, 2, "--mixed_precision=false"))["global_step"] == 2
    assert task.main(flags(paths, model_dir, 4, "--mixed_precision=true"))["global_step"] == 4
    assert task.main(flags(paths, model_dir, 6, "--mixed_precision=false"))["global_step"] == 6
    assert stored_step(model_dir) == (6, 6)


@pytest.mark.slow
def test_diverging_run_stops_before_a_non_finite_checkpoint(paths, tmp_path):
    model_dir = tmp_path / "m"
    with pytest.raises(TrainerError) as error:
        task.main(flags(paths, model_dir, 30, "--learning_rate=1e30",
                        "--checkpoint_every_steps=1", "--keep_checkpoints=100"))
    message = str(error.value)
    assert "\n" not in message
    assert " is nan at step " in message or " is inf at step " in message or "not finite" in message
    assert message.index("training data") < message.index("--learning_rate")
    checkpoints = tf.train.get_checkpoint_state(str(model_dir)).all_model_checkpoint_paths
    assert checkpoints, "the run should have checkpointed before diverging"
    for path in checkpoints:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if name.startswith("model/") and np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.isfinite(value).all(), (path, name)
    assert not (model_dir / "export").exists()
    assert not (model_dir / "eval_report.json").exists()


@pytest.mark.slow
def test_non_finite_eval_loss_is_not_exported(paths, tmp_path, monkeypatch):
    real_run_eval = train.run_eval

    def nan_eval(*args, **kwargs):
        metrics, matrix = real_run_eval(*args, **kwargs)
        return dict(metrics, loss=float("nan")), matrix

    monkeypatch.setattr(train, "run_eval", nan_eval)
    with pytest.raises(TrainerError) as error:
        task.main(flags(paths, tmp_path / "m", 2))
    message = str(error.value)
    assert "eval loss" in message and "nan" in message and "step 2" in message
    assert message.index(paths["eval_data"]) < message.index("--learning_rate")
    assert not (tmp_path / "m" / "export").exists()
    assert not (tmp_path / "m" / "eval_report.json").exists()


def test_reports_are_strict_json(tmp_path):
    path = tmp_path / "report.json"
    write_json(str(path), {"loss": 1.5, "per_class": {"cat": 0.5}})
    assert json.loads(path.read_text()) == {"loss": 1.5, "per_class": {"cat": 0.5}}
    with pytest.raises(ValueError):
        write_json(str(path), {"loss": float("nan")})
    assert json.loads(path.read_text())["loss"] == 1.5  # the last good report stays
