"""Held-out drawings for the page's "show me" button and the demo.

They come from a dataset's eval and test splits (the TFRecords the pipeline
or the tutorial's script wrote), so they are drawings the model was not
trained on. The records keep only the normalised ink; its deltas add up to
the drawing in the unit box, which is scaled back to the 0-255 box of the
simplified ndjson format.

``python -m serving.examples --examples=DATASET --class=cat --count=5``
prints such drawings as ndjson lines (input for ``quickdraw-predict``).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
from pathlib import Path

import numpy as np

import command_line
import local_files
import tfrecord_schema as schema
from pipeline.drawing_readers import read_tfrecords

HELD_OUT = (schema.EVAL, schema.TEST)


class ExamplesError(command_line.UserError):
    """The examples' location holds no readable held-out drawings."""


def example_files(location: str) -> list[str]:
    """A dataset folder's eval and test shards, or the TFRecords a pattern matches."""
    if os.path.isdir(location):
        patterns = [os.path.join(location, schema.shard_pattern(s)) for s in HELD_OUT]
    else:
        patterns = [location]
    files = sorted(f for p in patterns for f in local_files.glob(p) if os.path.isfile(f))
    if not files:
        raise ExamplesError("no eval or test TFRecords in %s" % location)
    return files


def strokes_to_drawing(strokes) -> list[list[list[int]]]:
    """Strokes in the unit box (placed anywhere) -> an ndjson ``drawing`` in the 0-255 box."""
    xs = np.concatenate([s[0] for s in strokes])
    ys = np.concatenate([s[1] for s in strokes])
    low = np.array([xs.min(), ys.min()])
    return [[np.rint((x - low[0]) * 255).astype(int).tolist(),
             np.rint((y - low[1]) * 255).astype(int).tolist()] for x, y in strokes]


def load_examples(location: str, per_class: int = 50) -> dict[str, list[list]]:
    """Up to ``per_class`` held-out drawings of each class, in file order."""
    by_class: dict[str, list[list]] = collections.defaultdict(list)
    rejects: collections.Counter = collections.Counter()
    for path in example_files(location):
        for candidate in read_tfrecords(Path(path), rejects, recognized_only=False):
            if len(by_class[candidate.word]) < per_class:
                by_class[candidate.word].append(strokes_to_drawing(candidate.make_strokes()))
    if not by_class:
        raise ExamplesError("no drawings in the eval or test TFRecords of %s" % location)
    return dict(by_class)


def main(argv: list[str] | None = None) -> int:
    """Prints held-out drawings of a class as ndjson; exit status 2 when there are none."""
    p = command_line.Parser("quickdraw-examples", "serving.examples",
                            description=__doc__.split("\n")[0])
    p.add_argument("--examples", required=True,
                   help="dataset folder (its eval and test splits) or a TFRecord pattern")
    p.add_argument("--class", dest="word", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    return command_line.run_command(lambda: _print_examples(p.parse_args(argv)))


def _print_examples(args: argparse.Namespace) -> int:
    drawings = load_examples(args.examples).get(args.word, [])  # TensorFlow reads the TFRecords
    if not drawings:
        raise ExamplesError("no held-out drawing of %r in %s" % (args.word, args.examples))
    for drawing in random.Random(args.seed).sample(drawings, min(args.count, len(drawings))):
        print(json.dumps({"word": args.word, "drawing": drawing}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
