"""``python -m trainer.predict``: top-k classes of ndjson drawings with an export.

Reads Quick, Draw! ndjson (simplified or raw: float coordinates and a third
time array are fine) from a regular file or stdin and prints one JSON line
(strict JSON: never NaN) per input line, in order. With ``--target`` it
applies the game's rule: the drawing is accepted when the target class's
probability exceeds ``--threshold``.
Lines are checked by ``ndjson_format`` (the pipeline's rules and reason names;
``word`` and the other metadata are optional here and only echoed): a bad line
gets an error record ``{"line", "error": reason, "message"}`` and the others
are still predicted. Blank lines are skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Iterable, Iterator

import numpy as np

import command_line
import local_files
from ndjson_format import REASONS, Limits, Reject, check_strokes, load_line
from trainer.errors import TrainerError

BATCH = 64
_ECHOED = ("key_id", "word")
# The error of a valid drawing the model gave NaN or infinite scores for (a
# damaged model): a record of its own, as JSON has no NaN.
NON_FINITE_SCORES = "non_finite_scores"
UNSCORED_MESSAGE = "the model gave NaN or infinite scores for this drawing"


def drawing_points(record: dict, limits: Limits = Limits()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absolute x, y and end-of-stroke flags of a record's drawing; ``ValueError``
    with the reject reason when it is not a valid drawing."""
    points = check_strokes(record.get("drawing") if isinstance(record, dict) else None, limits)
    if isinstance(points, Reject):
        raise ValueError(points.reason)
    return points[:, 0], points[:, 1], points[:, 2]


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


def read_lines(path: str, max_bytes: int = Limits().max_bytes) -> Iterator[bytes]:
    """The lines of a regular file, or of stdin for ``-``, as bytes without
    their newline (a byte that is not UTF-8 is one bad line, not a crash).

    The file is checked now, before any line is read: a FIFO or a device
    (``/dev/zero``) could block or never end, so anything but a regular file
    (after links) is a ``TrainerError``. A line longer than ``max_bytes``
    (0: no cap) is cut to ``max_bytes + 1`` bytes as it is read, as the
    pipeline does, so it is rejected as too long without being held whole.
    """
    if path == "-":
        return _lines(contextlib.nullcontext(sys.stdin.buffer), path, max_bytes)
    try:
        return _lines(local_files.open_regular(path), path, max_bytes)
    except local_files.NotARegularFile as e:
        raise TrainerError(str(e)) from e
    except OSError as e:
        raise TrainerError("cannot read %s: %s" % (path, e.strerror)) from e


def _lines(opened, path: str, max_bytes: int) -> Iterator[bytes]:
    try:
        with opened as f:
            yield from local_files.bounded_lines(f, max_bytes)
    except OSError as e:
        raise TrainerError("cannot read %s: %s" % (path, e.strerror)) from e


def _echo(record: dict) -> dict:
    """The record's key_id and word, when they are plain values."""
    return {k: record[k] for k in _ECHOED if type(record.get(k)) in (str, int)}


def predict_lines(predictor: Predictor, lines: Iterable[bytes | str], top_k: int = 3,
                  target: str | None = None, threshold: float = 0.5,
                  out=sys.stdout, err=sys.stderr, limits: Limits = Limits()) -> tuple[int, int]:
    """Prints a JSON record per non-blank line (an answer or an error), in input
    order; returns (drawings predicted, lines rejected). Answers are written
    batch by batch, so a later failure never loses them."""
    if target is not None and target not in predictor.classes:
        raise TrainerError("unknown --target %r: the model knows %d classes (e.g. %s)"
                           % (target, len(predictor.classes), ", ".join(predictor.classes[:5])))
    done = rejected = 0
    pending: list[tuple[dict, np.ndarray | None]] = []

    def flush():
        nonlocal done, rejected
        drawings = [(p[:, 0], p[:, 1], p[:, 2]) for _, p in pending if p is not None]
        probabilities = iter(predictor.probabilities(drawings) if drawings else ())
        for meta, points in pending:
            if points is not None:
                scores = next(probabilities)
                if np.isfinite(scores).all():
                    meta.update(rank(scores, predictor.classes, top_k, target, threshold))
                    done += 1
                else:
                    meta.update(error=NON_FINITE_SCORES, message=UNSCORED_MESSAGE)
                    rejected += 1
            out.write(json.dumps(meta, allow_nan=False) + "\n")
        out.flush()
        pending.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = load_line(line, limits)
        points = record if isinstance(record, Reject) else check_strokes(record.get("drawing"), limits)
        meta = {"line": number}
        if not isinstance(record, Reject):
            meta.update(_echo(record))
        if isinstance(points, Reject):
            rejected += 1
            meta.update(error=points.reason, message=REASONS[points.reason])
            pending.append((meta, None))
        else:
            pending.append((meta, points))
        if len(pending) == BATCH:
            flush()
    flush()
    if rejected:
        err.write("%d drawings predicted, %d lines rejected (records with \"error\")\n"
                  % (done, rejected))
    return done, rejected


def build_parser() -> argparse.ArgumentParser:
    p = command_line.Parser("quickdraw-predict", "trainer.predict",
                            description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="export directory (a SavedModel)")
    p.add_argument("--input", default="-", help="ndjson file, or - for stdin")
    p.add_argument("--top_k", type=int, default=3)
    p.add_argument("--target", default=None, help="class the player was asked to draw")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability above which the target counts as recognised")
    p.add_argument("--max_points", type=int, default=Limits().max_points,
                   help="reject drawings with more points (0: no cap)")
    p.add_argument("--max_bytes", type=int, default=Limits().max_bytes,
                   help="reject longer lines (0: no cap)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (2 for bad input, as one line).
    TensorFlow's native INFO lines are left out of stderr."""
    return command_line.run_command(lambda: _predict(build_parser().parse_args(argv)))


def _predict(args: argparse.Namespace) -> int:
    try:
        if args.top_k <= 0:
            raise TrainerError("--top_k must be positive")
        if args.max_points < 0 or args.max_bytes < 0:
            raise TrainerError("--max_points and --max_bytes must be 0 (no cap) or more")
        if not 0.0 <= args.threshold <= 1.0:  # NaN fails too
            raise TrainerError("--threshold=%s must be in [0, 1]" % args.threshold)
        lines = read_lines(args.input, args.max_bytes)  # a bad --input before the model loads
        predictor = Predictor(args.model)
        done, rejected = predict_lines(predictor, lines,
                                       min(args.top_k, len(predictor.classes)),
                                       args.target, args.threshold,
                                       limits=Limits(max_points=args.max_points,
                                                     max_bytes=args.max_bytes))
    except BrokenPipeError:
        # The reader stopped early (``| head``): end quietly, as Unix tools do,
        # with stdout pointed at /dev/null so the exit flush cannot fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0 if done or not rejected else 2


if __name__ == "__main__":
    sys.exit(main())
