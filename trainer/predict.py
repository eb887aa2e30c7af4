"""``python -m trainer.predict``: top-k classes of ndjson drawings with an export.

Reads Quick, Draw! ndjson (simplified or raw: float coordinates and a third
time array are fine) from a file or stdin and prints one JSON line per
drawing. With ``--target`` it applies the game's rule: the drawing is
accepted when the target class's probability exceeds ``--threshold``.
Lines that are not drawings are reported on stderr and skipped.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable, Iterator

import numpy as np

from trainer.errors import TrainerError

BATCH = 64


def drawing_points(record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absolute x, y and end-of-stroke flags of a drawing's points."""
    strokes = record.get("drawing") if isinstance(record, dict) else None
    if not isinstance(strokes, list) or not strokes:
        raise ValueError("no 'drawing' list of strokes")
    xs, ys, ends = [], [], []
    for stroke in strokes:
        if not isinstance(stroke, list) or len(stroke) < 2 or len(stroke[0]) != len(stroke[1]):
            raise ValueError("a stroke is not [[x...], [y...]] of equal lengths")
        if not stroke[0]:
            raise ValueError("a stroke has no points")
        xs.extend(stroke[0])
        ys.extend(stroke[1])
        ends.extend([0.0] * (len(stroke[0]) - 1) + [1.0])
    if len(xs) < 2:
        raise ValueError("a drawing needs at least two points")
    try:
        x, y = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
    except (TypeError, ValueError):
        raise ValueError("coordinates must be numbers")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("coordinates must be finite")
    return x, y, np.asarray(ends, np.float32)


class Predictor:
    """An exported model, ready to score batches of drawings."""

    def __init__(self, export_dir: str):
        from trainer.export import RAW_SIGNATURE, load_export  # loads TensorFlow
        loaded, self.classes = load_export(export_dir)
        self._loaded = loaded
        self._serve = loaded.signatures[RAW_SIGNATURE]

    def probabilities(self, drawings: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """``[len(drawings), num_classes]`` class probabilities."""
        import tensorflow as tf
        n = max(len(d[0]) for d in drawings)
        batch = np.zeros((3, len(drawings), n), np.float32)
        for i, points in enumerate(drawings):
            for channel in range(3):
                batch[channel, i, :len(points[0])] = points[channel]
        lengths = np.array([len(d[0]) for d in drawings], np.int32)
        out = self._serve(x=tf.constant(batch[0]), y=tf.constant(batch[1]),
                          stroke_end=tf.constant(batch[2]), lengths=tf.constant(lengths))
        return out["probabilities"].numpy()


def rank(probabilities: np.ndarray, classes: list[str], top_k: int,
         target: str | None, threshold: float) -> dict:
    """One drawing's answer: the top k, and the game's verdict when a target is set."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    answer = {"top_k": [{"class": classes[i], "score": round(float(probabilities[i]), 6)}
                        for i in order]}
    if target is not None:
        score = float(probabilities[classes.index(target)])
        answer.update(target=target, target_score=round(score, 6), accepted=score > threshold)
    return answer


def read_lines(path: str) -> Iterator[str]:
    if path == "-":
        yield from sys.stdin
        return
    try:
        with open(path, encoding="utf-8") as f:
            yield from f
    except OSError as e:
        raise TrainerError("cannot read %s: %s" % (path, e.strerror)) from e


def predict_lines(predictor: Predictor, lines: Iterable[str], top_k: int = 3,
                  target: str | None = None, threshold: float = 0.5,
                  out=sys.stdout, err=sys.stderr) -> tuple[int, int]:
    """Prints a JSON answer per drawing; returns (drawings predicted, lines rejected)."""
    if target is not None and target not in predictor.classes:
        raise TrainerError("unknown --target %r: the model knows %d classes (e.g. %s)"
                           % (target, len(predictor.classes), ", ".join(predictor.classes[:5])))
    done = rejected = 0
    pending: list[tuple[dict, tuple]] = []

    def flush():
        nonlocal done
        if not pending:
            return
        probabilities = predictor.probabilities([points for _, points in pending])
        for (meta, _), p in zip(pending, probabilities):
            meta.update(rank(p, predictor.classes, top_k, target, threshold))
            out.write(json.dumps(meta) + "\n")
        done += len(pending)
        pending.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError("not JSON (%s)" % e) from e
            points = drawing_points(record)
        except ValueError as e:
            rejected += 1
            err.write("line %d rejected: %s\n" % (number, e))
            continue
        meta = {k: record[k] for k in ("key_id", "word") if k in record}
        pending.append((meta, points))
        if len(pending) == BATCH:
            flush()
    flush()
    return done, rejected


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.predict",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="export directory (a SavedModel)")
    p.add_argument("--input", default="-", help="ndjson file, or - for stdin")
    p.add_argument("--top_k", type=int, default=3)
    p.add_argument("--target", default=None, help="class the player was asked to draw")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability above which the target counts as recognised")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.top_k <= 0:
            raise TrainerError("--top_k must be positive")
        predictor = Predictor(args.model)
        done, rejected = predict_lines(predictor, read_lines(args.input),
                                       min(args.top_k, len(predictor.classes)),
                                       args.target, args.threshold)
    except TrainerError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    if rejected:
        print("%d drawings predicted, %d lines rejected" % (done, rejected), file=sys.stderr)
    return 0 if done or not rejected else 2


if __name__ == "__main__":
    sys.exit(main())
