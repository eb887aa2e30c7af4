"""docs/trainer.md:155-163: each number flag's range, exactly: the bounds the
doc gives pass, a value past them is one line naming the flag."""
from __future__ import annotations

import pytest

from trainer import task
from trainer.errors import TrainerError

REQUIRED = ["--training_data=t", "--eval_data=e", "--classes_file=c", "--model_dir=m"]


def check(*flags: str) -> None:
    task.validate(task.build_parser().parse_args(REQUIRED + list(flags)))


def refused(flag: str) -> str:
    with pytest.raises(TrainerError) as error:
        check(flag)
    text = str(error.value)
    assert text.startswith(flag.split("=")[0] + " ") and "\n" not in text, text
    return text


@pytest.mark.parametrize("name", ["--dropout", "--label_smoothing", "--augment_scale",
                                  "--augment_drop_points", "--augment_drop_strokes"])
def test_zero_to_one_flags_take_0_to_below_1(name):
    check(name + "=0")
    check(name + "=0.999")
    assert "[0, 1)" in refused(name + "=1")
    assert "[0, 1)" in refused(name + "=-0.001")


@pytest.mark.parametrize("name, most", [("--augment_shear", 10), ("--augment_rotation", 180),
                                        ("--augment_jitter", 1)])
def test_closed_ranges(name, most):
    check(name + "=0")
    check("%s=%g" % (name, most))
    refused("%s=%g" % (name, most * 1.001))
    refused(name + "=-0.001")


def test_learning_rate_above_0_and_clipping_0_or_more():
    check("--learning_rate=1e-30")
    refused("--learning_rate=0")
    check("--gradient_clipping_norm=0")
    refused("--gradient_clipping_norm=-0.001")


def test_seed_in_0_to_2_to_the_32():
    check("--seed=0")
    check("--seed=%d" % (2 ** 32 - 1))
    refused("--seed=%d" % 2 ** 32)


@pytest.mark.parametrize("name", ["--steps", "--batch_size", "--num_layers", "--num_nodes",
                                  "--checkpoint_every_steps", "--keep_checkpoints", "--log_every_steps",
                                  "--top_k", "--steps_per_execution", "--cnn_dense", "--batch_tokens",
                                  "--eval_steps"])
def test_counts_and_periods_are_positive(name):
    check(name + "=1")
    assert "positive" in refused(name + "=0")


def test_eval_every_steps_takes_0_for_the_end_only():
    """docs/trainer.md:136: `--eval_every_steps` (0: only at the end)."""
    check("--eval_every_steps=0")
    refused("--eval_every_steps=-1")


@pytest.mark.parametrize("name", ["--num_conv", "--conv_len", "--cnn_filters"])
def test_list_counts_are_positive(name, capsys):
    with pytest.raises(SystemExit) as e:
        check(name + "=8,0")
    assert e.value.code == 2 and "expected positive integers" in capsys.readouterr().err


def test_raster_size_at_least_2_to_the_number_of_cnn_filters():
    """docs/trainer.md:141: `--raster_size` at least 2 to the number of `--cnn_filters`."""
    check("--raster_size=8", "--cnn_filters=4,4,4")
    with pytest.raises(TrainerError, match="^--raster_size must be at least"):
        check("--raster_size=7", "--cnn_filters=4,4,4")
