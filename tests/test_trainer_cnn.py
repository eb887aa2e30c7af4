"""The raster CNN: drawings rendered in the graph, the same image from the input
pipeline and from the model itself, and an export that serves raw strokes."""
import json
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

import tfrecord_schema as schema
from serving import page_check
from trainer import data, task
from trainer.model import ModelConfig, build_model
from trainer.predict import Predictor, drawing_points
from trainer.raster import RASTER, render
from serving_helpers import ServerProcess
from trainer_helpers import BUNDLED_SAMPLE, data_flags, read_drawings, write_tutorial_dataset

CLASSES = ["cat", "moon", "ladder", "umbrella"]
TINY_CNN = ["--model=cnn", "--raster_size=16", "--cnn_filters=4,8", "--cnn_dense=16"]


def ink_of(points: list[tuple[float, float, float]]) -> np.ndarray:
    """parse_line's ink of absolute points (x, y, end of stroke) already in the unit square."""
    p = np.asarray(points, np.float32)
    return np.concatenate([p[1:, :2] - p[:-1, :2], p[1:, 2:]], axis=1)


def test_render_draws_each_stroke_and_the_order():
    # A horizontal stroke along the top, then a vertical one down the left.
    ink = ink_of([(0, 0, 0), (1, 0, 1), (0, 0.25, 0), (0, 1, 1)])
    image = render(ink[np.newaxis], np.array([len(ink)]), 12).numpy()[0]
    lines, order = image[..., 0], image[..., 1]
    assert image.shape == (12, 12, 2) and image.min() >= 0 and image.max() <= 1
    assert (lines[1, 1:11] > 0.7).all(), "the first stroke, row 1 from margin to margin"
    assert (lines[3:11, 1] > 0.7).all(), "the second stroke, column 1"
    assert lines[0].max() == 0 and lines[:, 11].max() == 0, "the margin stays blank"
    assert lines[3:, 3:].max() == 0, "nothing where nothing was drawn"
    assert order[1, 10] > order[10, 1] > 0, "the first stroke is brighter"
    # Padding (and a longer batch) change nothing.
    padded = np.concatenate([ink, np.zeros((5, 3), np.float32)])
    again = render(padded[np.newaxis], np.array([len(ink)]), 12).numpy()[0]
    np.testing.assert_array_equal(again, image)


def test_model_renders_as_the_input_pipeline_does(tmp_path):
    paths = write_tutorial_dataset(tmp_path, CLASSES, train_per_class=2, eval_per_class=3,
                                   shards=1)
    model = build_model(ModelConfig(num_classes=4, model="cnn", raster_size=16,
                                    cnn_filters=(4, 8), cnn_dense=16))
    batches = data.make_dataset(paths["eval_data"], 8, CLASSES, training=False,
                                boundaries=[40], raster_size=16)
    seen = 0
    for features, _ in batches:
        assert features[RASTER].shape[1:] == (16, 16, 2)
        own = {k: v for k, v in features.items() if k != RASTER}
        np.testing.assert_allclose(model(own).numpy(), model(features).numpy(), atol=1e-6)
        one = {k: v[:1] for k, v in own.items()}
        np.testing.assert_allclose(model(one).numpy()[0], model(own).numpy()[0], atol=1e-5)
        seen += len(features[data.LENGTHS])
    assert seen == 12


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    paths = write_tutorial_dataset(root / "data", CLASSES)
    metrics = task.main(data_flags(paths) + TINY_CNN + [
        "--model_dir=%s" % (root / "model"), "--steps=12", "--batch_size=8", "--seed=1",
        "--learning_rate=0.003", "--augment", "--label_smoothing=0.1",
        "--eval_every_steps=0", "--checkpoint_every_steps=12"])
    return {"metrics": metrics, "export": str(root / "model" / "export"), "paths": paths}


@pytest.mark.slow
def test_cnn_trains_and_its_export_serves_raw_strokes(cnn_run):
    metrics = cnn_run["metrics"]
    assert metrics["global_step"] == 12 and metrics["num_examples"] == 20
    assert np.isfinite(metrics["loss"]) and 0 < metrics["temperature"]
    lines = [line for lines in read_drawings(BUNDLED_SAMPLE, CLASSES).values()
             for line in lines[20:22]]
    # The export, fed raw strokes, equals the trained model on parse_line's ink.
    config = ModelConfig.from_dict(json.loads(
        open(cnn_run["export"] + "/assets/model_config.json").read()))
    assert config.model == "cnn" and config.raster_size == 16
    predictor = Predictor(cnn_run["export"])
    probabilities = predictor.probabilities([drawing_points(json.loads(x)) for x in lines])
    assert probabilities.shape == (len(lines), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Served by quickdraw-serve through its REST predict API.
    server = ServerProcess("--model=%s" % cnn_run["export"], "--top_k=3")
    try:
        body = json.dumps({"instances": [json.loads(x)["drawing"] for x in lines]}).encode()
        request = urllib.request.Request(server.url + "/v1/models/quickdraw:predict", body,
                                         {"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.stop()
    for row, prediction in zip(probabilities, answer["predictions"]):
        best = np.argsort(-row, kind="stable")[:3]
        assert prediction["classes"] == [CLASSES[i] for i in best]
        np.testing.assert_allclose(prediction["scores"], row[best], atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(page_check.find_browser() is None,
                    reason="no Chromium installed (apt-get install chromium, or set "
                           "QUICKDRAW_CHROMIUM); the REST test above covers the export")
def test_cnn_on_the_drawing_page(serving_dataset, tmp_path):
    dataset = str(serving_dataset)
    classes_file = "%s/%s" % (dataset, schema.CLASSES_FILE)
    task.main(["--training_data=%s/%s" % (dataset, schema.shard_pattern(schema.TRAIN)),
               "--eval_data=%s/%s" % (dataset, schema.shard_pattern(schema.EVAL)),
               "--classes_file=%s" % classes_file, "--model_dir=%s" % (tmp_path / "m"),
               "--steps=10", "--batch_size=8", "--eval_every_steps=0"] + TINY_CNN)
    server = ServerProcess("--model=%s" % (tmp_path / "m" / "export"), "--examples=%s" % dataset,
                           "--threshold=0.3", "--top_k=3")
    try:
        report = page_check.play(server.url + "/", str(tmp_path / "page.png"), target="cat")
    finally:
        server.stop()
    assert len(report["strokes"]) >= 2 and all(len(g) == 3 for g in report["strokes"])
    assert report["status"] == ""
