"""The trainer learns: held-out real drawings of five classes, well above chance."""
import pytest

from trainer import task
from trainer_helpers import data_flags, write_tutorial_dataset

CLASSES = ["moon", "star", "ladder", "umbrella", "clock"]


@pytest.mark.slow
def test_learns_five_real_classes_well_above_chance(tmp_path):
    # 20 drawings a class to train on; the 5 after them in each file are held out.
    paths = write_tutorial_dataset(tmp_path / "data", CLASSES, train_per_class=20,
                                   eval_per_class=5, seed=0)
    metrics = task.main(data_flags(paths) + [
        "--model_dir=%s" % (tmp_path / "model"), "--steps=200", "--batch_size=16",
        "--num_layers=1", "--num_nodes=32", "--num_conv=16,32", "--conv_len=5,3",
        "--dropout=0.1", "--learning_rate=0.005", "--seed=0", "--eval_every_steps=0",
        "--log_every_steps=50"])
    assert metrics["num_examples"] == 25
    # Three times chance: 15 of the 25 right, counted (3 * 0.2 is 0.6000000000000001).
    assert round(metrics["accuracy"] * 25) >= 3 * 25 // len(CLASSES), metrics
    assert metrics["top3_accuracy"] >= 0.8, metrics
