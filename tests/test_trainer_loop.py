"""Several steps per compiled call: the same updates as one step at a time, an early stop
at a non-finite loss, and the host reading the results once per call."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import task, train
from trainer.model import ModelConfig, build_model
from trainer.train_step import make_optimizer, make_train_loop, make_train_step
from trainer_helpers import TINY_MODEL, data_flags, write_tutorial_dataset

CONFIG = ModelConfig(num_classes=3, num_layers=1, num_nodes=8, num_conv=(6,), conv_len=(3,),
                     dropout=0.0)


def batches(count: int, bad: int | None = None) -> list:
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        ink = rng.normal(size=(4, 9, 3)).astype(np.float32)
        if i == bad:
            ink[0, 0, 0] = np.inf
        out.append(({"ink": ink, "lengths": np.array([9, 5, 7, 3], np.int32)},
                    rng.integers(0, 3, 4).astype(np.int32)))
    return out


def fresh():
    keras.utils.set_random_seed(0)
    model = build_model(CONFIG)
    optimizer = make_optimizer(0.01, False)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def dataset(items) -> tf.data.Dataset:
    return tf.data.Dataset.from_generator(lambda: iter(items), output_signature=(
        {"ink": tf.TensorSpec([None, None, 3]), "lengths": tf.TensorSpec([None], tf.int32)},
        tf.TensorSpec([None], tf.int32)))


@pytest.mark.slow
def test_steps_in_one_call_equal_steps_one_at_a_time():
    items = batches(5)
    model, optimizer = fresh()
    step = make_train_step(tf.distribute.get_strategy(), model, optimizer, 0.5)
    losses = [float(step(item)[0]) for item in items]
    one_at_a_time = [w.numpy() for w in model.weights]

    model, optimizer = fresh()
    loop = make_train_loop(tf.distribute.get_strategy(), model, optimizer, 0.5)
    iterator = iter(dataset(items))
    loss, _, examples, skipped, _ = loop(iterator, tf.constant(3))
    assert float(loss) == pytest.approx(losses[2], rel=1e-5)
    assert float(examples) == 12 and int(skipped) == 0
    loop(iterator, tf.constant(2))
    assert int(optimizer.iterations.numpy()) == 5
    for a, b in zip(one_at_a_time, model.weights):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-5, atol=1e-6)


def test_a_non_finite_loss_ends_the_call_at_its_batch():
    items = batches(4, bad=1)
    model, optimizer = fresh()
    loop = make_train_loop(tf.distribute.get_strategy(), model, optimizer, 0.5)
    iterator = iter(dataset(items))
    loss, norm, examples, _, _ = loop(iterator, tf.constant(4))
    assert not np.isfinite(float(loss)) and float(examples) == 8
    remaining = next(iterator)
    np.testing.assert_array_equal(remaining[0]["ink"].numpy(), items[2][0]["ink"])


@pytest.mark.slow
def test_host_reads_results_once_per_call(tmp_path, monkeypatch, capsys):
    paths = write_tutorial_dataset(tmp_path / "data", ["cat", "moon", "ladder"],
                                   train_per_class=8, eval_per_class=2, shards=1)
    calls = []

    def counted(*args, **kwargs):
        run = make_train_loop(*args, **kwargs)

        def wrapper(iterator, count):
            calls.append(int(count))
            return run(iterator, count)
        return wrapper

    monkeypatch.setattr(train, "make_train_loop", counted)
    metrics = task.main(data_flags(paths) + TINY_MODEL + [
        "--model_dir=%s" % (tmp_path / "m"), "--steps=23", "--batch_size=4", "--seed=0",
        "--steps_per_execution=10", "--log_every_steps=15", "--checkpoint_every_steps=100",
        "--eval_every_steps=0"])
    assert metrics["global_step"] == 23
    # Calls end at the log step (15) and at the last step.
    assert calls == [10, 5, 8]
    logged = [line.split()[2] for line in capsys.readouterr().out.splitlines()
              if line.startswith("train step")]
    assert logged == ["15/23:", "23/23:"]
    assert tf.train.latest_checkpoint(str(tmp_path / "m")).endswith("ckpt-23")
