"""Classification metrics from labels and ranked predictions (numpy)."""
from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, ranked: np.ndarray, losses: np.ndarray,
                           classes: list[str]) -> dict:
    """Loss, top-1/top-3 accuracy, MAP@3 and per-class accuracy.

    ``ranked[i]`` are example i's class ids, best first (at least three when
    there are three classes). MAP@3 is the Kaggle Quick, Draw! metric: 1/rank
    of the true class when it is among the top three, else 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    ranked = np.asarray(ranked, dtype=np.int64)
    n = int(labels.shape[0])
    if n == 0:
        raise ValueError("no examples to evaluate")
    hits = ranked[:, :3] == labels[:, None]
    top1 = hits[:, 0]
    weights = 1.0 / np.arange(1, hits.shape[1] + 1)
    per_class = {}
    for index, name in enumerate(classes):
        mask = labels == index
        if mask.any():
            per_class[name] = float(top1[mask].mean())
    return {
        "loss": float(np.mean(losses)),
        "accuracy": float(top1.mean()),
        "top3_accuracy": float(hits.any(axis=1).mean()),
        "map3": float((hits * weights).sum(axis=1).mean()),
        "num_examples": n,
        "per_class": per_class,
    }


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix
