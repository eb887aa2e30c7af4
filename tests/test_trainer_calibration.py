"""Temperature scaling: fitted without storing logits, it changes probabilities and not
rankings; the export serves the calibrated probabilities; the report's pictures."""
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from trainer import charts
from trainer.calibration import BINS, CalibrationStats
from trainer.evaluate import CONFUSION_FILE, RELIABILITY_FILE, write_report
from trainer.export import RAW_SIGNATURE, export_model, export_temperature, load_export
from trainer.model import ModelConfig, build_model
from serving_helpers import raw_batch
from trainer_helpers import BUNDLED_SAMPLE, read_drawings

CLASSES = ["cat", "moon", "ladder"]


def overconfident(n: int = 4000, classes: int = 20, factor: float = 3.0, seed: int = 0):
    """Logits ``factor`` times too large for labels drawn from their true softmax."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes)) * 2.0
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return factor * z, labels


def ece(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The textbook definition, for comparison."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    return sum(abs(right[bins == b].sum() - confidence[bins == b].sum())
               for b in range(BINS)) / len(labels)


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_is_recovered_and_calibrates():
    logits, labels = overconfident()
    stats = CalibrationStats()
    for start in range(0, len(labels), 64):
        stats.update(logits[start:start + 64], labels[start:start + 64])
    result = stats.result()
    assert result["temperature"] == pytest.approx(3.0, rel=0.06)
    assert result["ece_uncalibrated"] == pytest.approx(ece(softmax(logits), labels), abs=1e-6)
    assert result["ece"] == pytest.approx(
        ece(softmax(logits / result["temperature"]), labels), abs=1e-6)
    assert result["ece_uncalibrated"] > 0.2 and result["ece"] < 0.03
    assert result["ece_cross_fitted"] < 0.03
    assert result["confident_wrong"] < result["confident_wrong_uncalibrated"] / 10
    assert result["confident_wrong_cross_fitted"] < result["confident_wrong_uncalibrated"] / 10
    bins = result["reliability"]["calibrated"]
    assert len(bins) == BINS and sum(b["count"] for b in bins) == len(labels)


def test_fixed_temperature_is_scored_not_fitted():
    logits, labels = overconfident(n=500)
    stats = CalibrationStats.at(2.0)
    stats.update(logits, labels)
    result = stats.result(fit=False)
    assert result["temperature"] == 2.0
    assert result["ece"] == pytest.approx(ece(softmax(logits / 2.0), labels), abs=1e-6)
    plain = CalibrationStats.at(1.0)
    plain.update(logits, labels)
    assert plain.result(fit=False)["ece"] == result["ece_uncalibrated"]


def test_export_carries_the_temperature_probabilities_change_rankings_do_not(tmp_path):
    model = build_model(ModelConfig(num_classes=3, num_layers=1, num_nodes=8, num_conv=(8,),
                                    conv_len=(3,)))
    lines = [line for lines in read_drawings(BUNDLED_SAMPLE, CLASSES).values()
             for line in lines[:4]]
    batch = {k: tf.constant(v) for k, v in raw_batch(lines).items()}
    served = {}
    for temperature in (1.0, 0.25):
        export_dir = str(tmp_path / str(temperature))
        export_model(model, CLASSES, export_dir, global_step=1, temperature=temperature)
        loaded, _ = load_export(export_dir)
        assert export_temperature(loaded) == temperature
        served[temperature] = loaded.signatures[RAW_SIGNATURE](**batch)
    logits = served[1.0]["logits"].numpy()
    np.testing.assert_allclose(served[0.25]["logits"].numpy(), logits, atol=1e-6)
    np.testing.assert_allclose(served[0.25]["probabilities"].numpy(), softmax(logits / 0.25),
                               atol=1e-5)
    assert not np.allclose(served[0.25]["probabilities"].numpy(),
                           served[1.0]["probabilities"].numpy(), atol=1e-3)
    np.testing.assert_array_equal(served[0.25]["class_ids"].numpy(),
                                  served[1.0]["class_ids"].numpy())


def image(path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB")).astype(int)


def test_report_pictures_have_counts_a_colour_scale_and_reliability(tmp_path):
    logits, labels = overconfident(n=300, classes=3)
    stats = CalibrationStats()
    stats.update(logits, labels)
    report = dict(stats.result(), accuracy=0.5)
    matrix = np.array([[9, 1, 0], [0, 10, 0], [2, 0, 8]])
    write_report(report, matrix, CLASSES, str(tmp_path))
    assert json.loads((tmp_path / "eval_report.json").read_text())["temperature"] > 1
    confusion = image(tmp_path / CONFUSION_FILE)
    cell, margin = 24, 110
    # A full-row cell is the scale's darkest colour with the count drawn on it in white.
    full = confusion[margin + cell:margin + 2 * cell, margin + cell:margin + 2 * cell]
    assert (np.abs(full - charts.SCALE[-1]).sum(axis=2) == 0).mean() > 0.5
    assert (full.min(axis=2) > 200).any(), "the count is drawn in the cell"
    # The colour scale beside the matrix runs from the darkest colour to white.
    bar = confusion[margin + 1:margin + 3 * cell - 1, margin + 3 * cell + 17:margin + 3 * cell + 30]
    column = bar[:, 5]
    assert np.abs(column[0] - charts.SCALE[-1]).sum() < 15
    assert np.abs(column[-1] - 255).sum() < 15
    assert len({tuple(p) for p in column}) > 20
    reliability = image(tmp_path / RELIABILITY_FILE)
    assert reliability.shape[0] > 300 and (np.abs(np.diff(reliability, axis=1)) > 0).any()
