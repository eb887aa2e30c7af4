"""Builds pipeline inputs from the real sample and reads the outputs back."""
from __future__ import annotations

import glob
import gzip
import json
import shutil
from pathlib import Path

import tfrecord_schema as schema

# Each bad line with the reason it must be rejected for; class known or not.
BAD_LINES = [
    ('{"word": "cat", "drawing": [[[1, 2], [3, 4]]', "invalid_json"),
    ('[1, 2]', "not_an_object"),
    ('{"drawing": [[[1, 2], [3, 4]]]}', "missing_word"),
    ('{"word": "crab"}', "missing_drawing"),
    ('{"word": "crab", "drawing": "strokes"}', "bad_drawing"),
    ('{"word": "crab", "drawing": []}', "empty_drawing"),
    ('{"word": "crab", "drawing": [[[1, 2]]]}', "bad_stroke"),
    ('{"word": "crab", "drawing": [[[], []]]}', "empty_stroke"),
    ('{"word": "crab", "drawing": [[[1, 2, 3], [1, 2]]]}', "xy_length_mismatch"),
    ('{"word": "crab", "drawing": [[[1, "2"], [1, 2]]]}', "non_numeric_coordinate"),
    ('{"word": "crab", "drawing": [[[1, NaN], [1, 2]]]}', "non_finite_coordinate"),
    ('{"word": "crab", "drawing": [[[1], [2]]]}', "single_point"),
    ('{"word": "crab", "drawing": [[%s, %s]]}' % (list(range(1500)), list(range(1500))), "too_many_points"),
    ('{"word": "crab", "pad": "%s", "drawing": [[[1, 2], [3, 4]]]}' % ("x" * 70000), "too_many_bytes"),
]
CAPS = ["--max_points=1000", "--max_bytes=60000"]
CLASSLESS = {"invalid_json", "not_an_object", "missing_word", "too_many_bytes"}


def real_files(real_sample: Path, n: int) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(real_sample / "*.ndjson")))[:n]


def to_raw_format(line: str) -> str:
    """A simplified drawing rewritten in the raw format: float x, y and a t row."""
    d = json.loads(line)
    d["drawing"] = [[[x * 1.75 + 0.5 for x in s[0]], [y * 1.25 + 0.25 for y in s[1]],
                     [10 * i for i in range(len(s[0]))]] for s in d["drawing"]]
    return json.dumps(d)


def make_mixed_input(real_sample: Path, folder: Path, classes: int = 12) -> Path:
    """Real per-class files, one gzipped, one in the raw format, one with a
    BOM and Windows line endings, and one file of bad lines."""
    folder.mkdir(parents=True, exist_ok=True)
    files = real_files(real_sample, classes)
    for f in files[3:]:
        shutil.copy(f, folder / f.name)
    with open(files[0], "rb") as src, gzip.open(folder / (files[0].name + ".gz"), "wb") as dst:
        dst.write(src.read())
    raw = [to_raw_format(l) for l in files[1].read_text(encoding="utf-8").splitlines()]
    (folder / files[1].name).write_text("\n".join(raw) + "\n", encoding="utf-8")
    windows = files[2].read_text(encoding="utf-8").splitlines()
    (folder / files[2].name).write_bytes(("\ufeff" + "\r\n".join(windows) + "\r\n").encode("utf-8"))
    good_crab = (real_sample / "crab.ndjson").read_text(encoding="utf-8").splitlines()[0]
    bad = [line for line, _ in BAD_LINES] + [good_crab, "   "]
    (folder / "broken.ndjson").write_text("\n".join(bad) + "\n", encoding="utf-8")
    return folder


def read_split(tf, output: Path, split: str, with_metadata: bool = True) -> list[dict]:
    """Every record of a split, parsed with the tutorial's feature spec."""
    files = sorted(glob.glob(str(output / schema.shard_pattern(split))))
    spec = schema.feature_spec(tf, with_metadata=with_metadata)
    out = []
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        out.append({k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v).numpy()
                    for k, v in ex.items()})
    return out
