"""Publishing an export: the new one appears whole, the old one stays until then."""
import os

import numpy as np
import pytest
import tensorflow as tf

import atomic_outputs
import tfrecord_schema as schema
from trainer.data import LENGTHS
from trainer.export import INK_SIGNATURE, export_model, load_export
from trainer.model import ModelConfig, build_model

CLASSES = ["a", "b", "c"]
INK = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
LENGTHS_IN = np.array([6, 4], np.int32)


def small_model(seed: int):
    tf.keras.utils.set_random_seed(seed)
    return build_model(ModelConfig(num_classes=3, num_layers=1, num_nodes=4, num_conv=(4,),
                                   conv_len=(3,)))


def exported_logits(export_dir) -> np.ndarray:
    loaded, _ = load_export(str(export_dir))
    return loaded.signatures[INK_SIGNATURE](ink=tf.constant(INK),
                                            lengths=tf.constant(LENGTHS_IN))["logits"].numpy()


@pytest.mark.slow
def test_replacement_is_whole_and_old_export_survives_until_then(tmp_path, monkeypatch):
    target = tmp_path / "export"
    old_model, new_model = small_model(1), small_model(2)
    export_model(old_model, CLASSES, str(target), 1)
    old_logits = exported_logits(target)
    seen_during_save = []
    real_save = tf.saved_model.save

    def save_and_look(obj, path, **kwargs):
        real_save(obj, path, **kwargs)
        seen_during_save.append(exported_logits(target))  # still the old export, whole

    monkeypatch.setattr(tf.saved_model, "save", save_and_look)
    export_model(new_model, CLASSES, str(target), 2)
    np.testing.assert_allclose(seen_during_save[0], old_logits)
    want = new_model({schema.INK: INK, LENGTHS: LENGTHS_IN}).numpy()
    np.testing.assert_allclose(exported_logits(target), want, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no staging or old folder left


def test_failed_export_leaves_the_old_one_in_place(tmp_path, monkeypatch):
    target = tmp_path / "export"
    export_model(small_model(1), CLASSES, str(target), 1)
    old_logits = exported_logits(target)

    def broken_save(obj, path, **kwargs):
        tf.io.gfile.makedirs(path)
        (tmp_path / os.path.basename(path) / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_model(small_model(2), CLASSES, str(target), 2)
    np.testing.assert_allclose(exported_logits(target), old_logits)
    assert sorted(os.listdir(tmp_path)) == ["export"]


@pytest.mark.slow
def test_replacement_without_an_atomic_swap(tmp_path, monkeypatch):
    """Filesystems without renameat2's exchange: rename aside, rename in, delete."""
    monkeypatch.setattr(atomic_outputs, "_exchange", lambda a, b: False)
    target = tmp_path / "export"
    export_model(small_model(1), CLASSES, str(target), 1)
    new_model = small_model(2)
    export_model(new_model, CLASSES, str(target), 2)
    want = new_model({schema.INK: INK, LENGTHS: LENGTHS_IN}).numpy()
    np.testing.assert_allclose(exported_logits(target), want, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["export"]
