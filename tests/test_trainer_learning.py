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
    chance = 1 / len(CLASSES)
    assert metrics["num_examples"] == 25
    assert metrics["accuracy"] >= 3 * chance, metrics
    assert metrics["top3_accuracy"] >= 0.8, metrics
