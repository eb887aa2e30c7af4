"""Temperature scaling and expected calibration error, fitted while the eval set streams by.

The game accepts a drawing when p(target) passes a threshold, which only
means something if a probability of 0.8 is right about 80% of the time. A
network trained to minimise cross-entropy on few drawings is overconfident;
dividing its logits by one temperature T fitted on held-out drawings (the
eval split) fixes most of that without changing any ranking (Guo et al.,
"On Calibration of Modern Neural Networks", 2017).

The fit needs no stored logits (an eval set of 345,000 drawings x 345
classes would not fit in memory): for every temperature of a fine
logarithmic grid, each batch adds its negative log-likelihood and its
reliability-bin sums. The temperature with the lowest NLL wins. Examples
alternate between two halves, each with its own sums, so the error of the
calibrated probabilities is also measured out of sample: each half scored
with the temperature fitted on the other (``ece_cross_fitted``).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

BINS = 15
CONFIDENT = 0.9   # a guess above this probability that is wrong is counted
GRID = np.exp(np.arange(-60, 61) * np.log(20.0) / 60)  # 0.05 ... 20, 5% apart, 1.0 exactly


@tf.function(reduce_retracing=True)
def _scaled(logits: tf.Tensor, labels: tf.Tensor, temperatures: tf.Tensor):
    """Per temperature and example: NLL and top-1 probability, ``[G, B]`` each."""
    shifted = logits - tf.reduce_max(logits, axis=1, keepdims=True)
    t = temperatures[:, tf.newaxis]
    lse = tf.reduce_logsumexp(shifted[tf.newaxis] / t[..., tf.newaxis], axis=2)
    target = tf.gather(shifted, labels, axis=1, batch_dims=1)
    return lse - target[tf.newaxis] / t, tf.exp(-lse)


class CalibrationStats:
    """Streaming sums for temperature scaling and reliability, in two halves."""

    @classmethod
    def at(cls, temperature: float) -> "CalibrationStats":
        """Sums for scoring at one given temperature (and at 1), without fitting."""
        return cls(np.unique([1.0, float(temperature)]))

    def __init__(self, temperatures: np.ndarray = GRID):
        self.temperatures = np.asarray(temperatures, np.float64)
        g = len(self.temperatures)
        self.nll = np.zeros((2, g))
        self.count = np.zeros((2, g, BINS))
        self.confidence = np.zeros((2, g, BINS))
        self.correct = np.zeros((2, g, BINS))
        self.confident_wrong = np.zeros((2, g))
        self.seen = 0

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        """Adds a batch of raw logits ``[B, C]`` and labels ``[B]``."""
        logits = np.asarray(logits, np.float64)
        labels = np.asarray(labels, np.int64)
        if len(labels) == 0:
            return
        g = len(self.temperatures)
        half = (self.seen + np.arange(len(labels))) % 2
        self.seen += len(labels)
        nll, confidence = (v.numpy().astype(np.float64) for v in _scaled(
            tf.constant(logits, tf.float32), tf.constant(labels),
            tf.constant(self.temperatures, tf.float32)))
        right = np.broadcast_to(np.argmax(logits, axis=1) == labels, confidence.shape)
        rows = half[np.newaxis] * g + np.arange(g)[:, np.newaxis]           # [G, B]
        cells = rows * BINS + np.minimum((confidence * BINS).astype(np.int64), BINS - 1)

        def add(target: np.ndarray, index: np.ndarray, weights: np.ndarray) -> None:
            target += np.bincount(index.ravel(), weights.ravel(),
                                  minlength=target.size).reshape(target.shape)

        add(self.nll, rows, nll)
        add(self.count, cells, np.ones_like(confidence))
        add(self.confidence, cells, confidence)
        add(self.correct, cells, right.astype(np.float64))
        add(self.confident_wrong, rows, ((confidence > CONFIDENT) & ~right).astype(np.float64))

    def _ece(self, pairs: list[tuple[int, int]]) -> float:
        """Expected calibration error of the halves ``h`` scored at temperature index ``t``."""
        count = sum(self.count[h, t] for h, t in pairs)
        gap = sum(self.correct[h, t] - self.confidence[h, t] for h, t in pairs)
        return float(np.abs(gap).sum() / max(count.sum(), 1.0))

    def _bins(self, t: int) -> list[dict]:
        count = self.count[:, t].sum(axis=0)
        return [{"count": int(c), "confidence": float(s / c) if c else 0.0,
                 "accuracy": float(a / c) if c else 0.0}
                for c, s, a in zip(count, self.confidence[:, t].sum(axis=0),
                                   self.correct[:, t].sum(axis=0))]

    def result(self, fit: bool = True) -> dict:
        """Calibration figures; ``fit=False`` keeps the temperature that the
        grid holds besides 1 (1 when it holds 1 only), as when an export is
        scored at its own temperature.

        ``temperature``: the fitted one (lowest NLL on all examples);
        ``ece``/``loss_calibrated``/``confident_wrong`` at that temperature,
        on the examples it was fitted on; ``ece_uncalibrated``/
        ``confident_wrong_uncalibrated`` at temperature 1;
        ``ece_cross_fitted``/``confident_wrong_cross_fitted``: each half at
        the temperature fitted on the other half, an out-of-sample estimate;
        ``reliability``: per bin of
        top-1 probability, the count, mean probability and accuracy.
        """
        if self.seen == 0:
            raise ValueError("no examples to calibrate on")
        one = int(np.argmin(np.abs(np.log(self.temperatures))))
        if fit:
            best = int(np.argmin(self.nll.sum(axis=0)))
            best_a, best_b = (int(np.argmin(self.nll[h])) for h in (0, 1))
            crossed = [(1, best_a), (0, best_b)]
        else:
            best = len(self.temperatures) - 1 - one if len(self.temperatures) == 2 else one
            crossed = [(0, best), (1, best)]
        return {
            "temperature": float(self.temperatures[best]),
            "ece": self._ece([(0, best), (1, best)]),
            "ece_uncalibrated": self._ece([(0, one), (1, one)]),
            "ece_cross_fitted": self._ece(crossed),
            "loss_calibrated": float(self.nll[:, best].sum() / self.seen),
            "confident_wrong": int(self.confident_wrong[:, best].sum()),
            "confident_wrong_uncalibrated": int(self.confident_wrong[:, one].sum()),
            "confident_wrong_cross_fitted": int(sum(self.confident_wrong[h, t]
                                                    for h, t in crossed)),
            "reliability": {"uncalibrated": self._bins(one), "calibrated": self._bins(best)},
        }
