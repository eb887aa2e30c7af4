"""The promotion gate: an absolute floor, and no regression beyond a margin
against the current model and against the best model ever promoted."""
from __future__ import annotations

from typing import Any

from deploy import registry as reg

DEFAULT_MARGIN = 0.02
DEFAULT_MIN_ACCURACY = 0.0


def pointer_key(pointer: dict[str, Any] | None) -> list[Any] | None:
    """Identifies one promotion (a rollback to an earlier version is another)."""
    if pointer is None:
        return None
    return [pointer["version"], pointer.get("promotion_id"),
            pointer.get("promoted_at")]


def best_promoted(pointer: dict[str, Any] | None, eval_set_id: str | None,
                  current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The most accurate version ever promoted, by the accuracy each had on
    this eval set when promoted (the current one as just measured)."""
    best = None
    for entry in reg.promotion_history(pointer):
        accuracy = entry.get("accuracy")
        if entry["version"] == (pointer or {}).get("version") and current:
            accuracy = current["accuracy"]
        elif eval_set_id is None or entry.get("eval_set_id") != eval_set_id:
            continue
        if accuracy is not None and (best is None
                                     or accuracy > best["accuracy"]):
            best = {"version": entry["version"], "accuracy": accuracy}
    return best


_EPSILON = 1e-9   # 0.78 must pass 0.80 - 0.02 despite binary fractions


def decide(report: dict[str, Any], margin: float,
           min_accuracy: float = DEFAULT_MIN_ACCURACY
           ) -> tuple[bool, str, list[dict[str, Any]]]:
    """The promotion gate: an absolute floor, and no regression beyond the
    margin against the current model and against the best promoted one."""
    candidate = float(report["candidate"]["accuracy"])
    checks = [{"check": "min_accuracy", "threshold": min_accuracy,
               "passed": candidate >= min_accuracy - _EPSILON}]
    words = ["%s min_accuracy %.4f" % (
        ">=" if checks[0]["passed"] else "<", min_accuracy)]
    for name, version, measured in (
            ("current", report.get("current_version"), report.get("current")),
            ("best", (report.get("best") or {}).get("version"),
             report.get("best"))):
        if measured is None:
            checks.append({"check": name, "version": None, "passed": True,
                           "note": "no %s model" % name})
            words.append("no %s model" % name)
            continue
        accuracy = float(measured["accuracy"])
        passed = candidate >= accuracy - margin - _EPSILON
        checks.append({"check": name, "version": version,
                       "accuracy": accuracy, "margin": margin,
                       "threshold": accuracy - margin, "passed": passed})
        words.append("%s %s %s accuracy %.4f - margin %.4f" % (
            ">=" if passed else "<", name, version, accuracy, margin))
    promoted = all(c["passed"] for c in checks)
    return promoted, "candidate accuracy %.4f %s" % (
        candidate, ", ".join(words)), checks
