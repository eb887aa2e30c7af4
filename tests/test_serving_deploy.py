"""The TF Serving and Vertex AI specs against the real export's signature."""
from __future__ import annotations

import io
import json
import re
import subprocess
from contextlib import redirect_stdout

import numpy as np
import pytest

from deploy import serving_request
from sample_paths import REPO
from serving.app import Settings

TF_SERVING = REPO / "deploy" / "tf_serving"


def request_for(lines: list[str], tmp_path) -> dict:
    path = tmp_path / "drawings.ndjson"
    path.write_text("\n".join(lines) + "\nnot a drawing\n")
    out = io.StringIO()
    with redirect_stdout(out):
        assert serving_request.main(["--input=%s" % path]) == 0
    return json.loads(out.getvalue())


def test_request_rows_are_padded_to_one_length(tmp_path, real_lines):
    request = request_for(real_lines[:3], tmp_path)
    rows = request["instances"]
    assert len(rows) == 3 and set(rows[0]) == set(serving_request.SIGNATURE_INPUTS)
    assert len({len(r["x"]) for r in rows}) == 1
    for row, line in zip(rows, real_lines):
        strokes = json.loads(line)["drawing"]
        assert row["lengths"] == sum(len(s[0]) for s in strokes)
        assert row["x"][:len(strokes[0][0])] == strokes[0][0]
        assert sum(row["stroke_end"]) == len(strokes)


@pytest.mark.slow
def test_engine_request_runs_the_exported_signature_like_the_server(tmp_path, serving_export,
                                                                    real_lines):
    import tensorflow as tf

    import ndjson_format
    from serving.model import ServedModel
    export, _ = serving_export
    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    specs = signature.structured_input_signature[1]
    assert {k: (v.dtype.name, v.shape.rank) for k, v in specs.items()} == \
        serving_request.SIGNATURE_INPUTS
    lines = real_lines[3::211]
    rows = request_for(lines, tmp_path)["instances"]
    # what TF Serving does with row-format instances: one tensor per input name
    tensors = {k: tf.constant([r[k] for r in rows], dtype=specs[k].dtype) for k in specs}
    engine = signature(**tensors)["probabilities"].numpy()
    server = ServedModel(str(export)).probabilities(
        [ndjson_format.check_line(l).points for l in lines])
    np.testing.assert_allclose(engine, server, atol=1e-6)


def test_tf_serving_config_matches_the_server():
    config = (TF_SERVING / "models.config").read_text()
    assert re.search(r'name: "quickdraw"', config) and Settings().model_name == "quickdraw"
    assert re.search(r'base_path: "/models/quickdraw"', config)
    run = (TF_SERVING / "run.sh").read_text()
    assert '-v "$MODELS:/models"' in run and '"$MODELS/quickdraw/$VERSION"' in run
    batching = (TF_SERVING / "batching.config").read_text()
    assert int(re.search(r"max_batch_size \{ value: (\d+) \}", batching)[1]) == \
        Settings().max_batch
    assert int(re.search(r"batch_timeout_micros \{ value: (\d+) \}", batching)[1]) == \
        Settings().batch_wait_ms * 1000
    vertex = (REPO / "deploy" / "vertex" / "endpoint.sh").read_text()
    assert "python -m deploy.serving_request" in vertex
    for script in (TF_SERVING / "run.sh", REPO / "deploy" / "vertex" / "endpoint.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
