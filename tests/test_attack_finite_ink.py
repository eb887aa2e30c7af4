"""Drawings whose normalised ink would leave float32's normal numbers (a range
that overflows, in x or in y, or subnormal values) through every reader: the
pipeline, predict and the server refuse them with the same reason,
``ink_out_of_range``, and nothing downstream sees NaN."""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

import tfrecord_schema as schema
from hostile_lines import record
from pipeline_helpers import read_split
from test_predict import strict_json

REASON = "ink_out_of_range"
ATTACKS = [
    b'{"word":"cat","key_id":"a1","drawing":[[[-3e38,3e38],[0,1]]]}',  # x's range overflows
    record(key_id="a2", drawing=[[[0, 5, 9], [2, 7, 1]], [[4], [3.4e38]], [[1], [-1e38]]]),  # y's
    record(key_id="a3", drawing=[[[0, 1e-30, 1e10], [0, 1, 2]]]),      # a subnormal unit coordinate
    record(key_id="a4", drawing=[[[0.5] * 4999 + [1e-42], [0.25] * 5000]]),  # one subnormal
]


@pytest.mark.slow
def test_the_pipeline_rejects_them_and_writes_only_finite_ink(tmp_path, bundled_sample):
    import tensorflow as tf

    from pipeline import run as run_lib

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(bundled_sample / "moon.ndjson", src)
    cats = (bundled_sample / "cat.ndjson").read_bytes()
    (src / "cat.ndjson").write_bytes(cats + b"\n".join(ATTACKS) + b"\n")
    out = tmp_path / "out"
    stats = run_lib.run(["--input=%s" % src, "--output=%s" % out, "--skip_transform",
                         "--train_observations_per_class=20", "--eval_observations_per_class=20",
                         "--output_shards=1"])
    assert stats["totals"]["rejected"] == {REASON: len(ATTACKS)}
    rejects = [json.loads(line) for path in sorted(out.glob("rejects-*.ndjson"))
               for line in path.read_text().splitlines()]
    first = len(cats.splitlines()) + 1
    assert sorted((r["line"], r["reason"]) for r in rejects) == [
        (first + i, REASON) for i in range(len(ATTACKS))]
    written = [r for split in (schema.TRAIN, schema.EVAL) for r in read_split(tf, out, split)]
    assert len(written) == stats["totals"]["selected"]["train"] + stats["totals"]["selected"]["eval"]
    assert all(np.isfinite(r[schema.INK]).all() for r in written)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from serving_helpers import tiny_export
    return tiny_export(tmp_path_factory.mktemp("finite_ink") / "export", ["cat", "dog"])[0]


@pytest.mark.slow
def test_predict_answers_the_reason_in_strict_json(export):
    from trainer.predict import Predictor, predict_lines

    out = io.StringIO()
    counts = predict_lines(Predictor(str(export)), ATTACKS + [record()], top_k=2, out=out,
                           err=io.StringIO())
    records = [strict_json(line) for line in out.getvalue().splitlines()]
    assert [r.get("error") for r in records] == [REASON] * len(ATTACKS) + [None]
    assert all(np.isfinite(s["score"]) for s in records[-1]["top_k"]) and counts == (1, 4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_server_answers_400_with_the_reason(export):
    from starlette.testclient import TestClient

    from serving.app import Settings, create_app
    from serving.model import ServedModel

    url = "/v1/models/quickdraw:predict"
    with TestClient(create_app(ServedModel(str(export)), Settings(top_k=2))) as client:
        for line in ATTACKS:
            answer = client.post(url, json={"instances": [json.loads(line)["drawing"]]})
            assert answer.status_code == 400 and answer.json()["reason"] == REASON, answer.text
        answer = client.post(url, json={"instances": [json.loads(record())["drawing"]]})
        assert answer.status_code == 200
        assert all(np.isfinite(answer.json()["predictions"][0]["scores"]))
