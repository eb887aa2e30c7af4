"""Counting every line: read = selected + unselected + filtered + rejected.

Workers emit partial counts keyed by ``(class name or None, field)``; they are
summed once and turned into ``stats.json``. A line rejected before its class
is known has the class ``None`` and counts in the totals only.

``damaged_files`` names each input file that could not be read to its end,
with the reason (see ``pipeline.sources``); the lines read from it before the
damage are counted like any other.

The rejects file holds a sample of each file's bad lines, so that a file of
millions of them cannot fill the disk or a worker's memory: the first
REJECTS_PER_FILE lines rejected while reading each file, and of the extra
copies of one drawing within one unit of input the first COPIES_PER_DRAWING.
Blank lines are counted only. ``rejects_left_out`` says, per file, how many
rejected lines the counts hold that the rejects file does not.
"""
from __future__ import annotations

import collections
import json

import apache_beam as beam

import tfrecord_schema as schema

READ, FILTERED, VALID = "read", "filtered", "valid"
REJECTED = "rejected:"
SELECTED = "selected:"
DAMAGED = "damaged:"
# Extra copies of a selected drawing: a reject reason of their own.
DUPLICATE = "duplicate"
BLANK_LINE = "blank_line"
REJECTS_PER_FILE = 1000
COPIES_PER_DRAWING = 10
# Per-file count fields (class None) behind ``rejects_left_out``, each + path:
BLANK_LINES = "blank_lines:"        # blank lines, never written
REJECTED_LINES = "rejected_lines:"  # other lines rejected while reading
COPIES_LEFT_OUT = "copies_left_out:"  # copies of a drawing past COPIES_PER_DRAWING
_PER_FILE = (BLANK_LINES, REJECTED_LINES, COPIES_LEFT_OUT)


def damaged_field(reason: str, path: str) -> str:
    """The count field of a damaged file (counted under the class None)."""
    return DAMAGED + reason + ":" + path


def left_out(per_file: dict[str, int]) -> int:
    """Rejected lines of a file not in the rejects file, from its per-file
    counts ``{BLANK_LINES: n, ...}``."""
    return (per_file.get(BLANK_LINES, 0) + max(0, per_file.get(REJECTED_LINES, 0) - REJECTS_PER_FILE)
            + per_file.get(COPIES_LEFT_OUT, 0))


class SumCounts(beam.CombineFn):
    """Adds up ``{(class, field): n}`` dicts."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, counts):
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs):
        out = collections.Counter()
        for acc in accs:
            out.update(acc)
        return out

    def extract_output(self, acc):
        return dict(acc)


def _empty() -> dict:
    return {"read": 0, "selected": {s: 0 for s in schema.SPLITS}, "unselected": 0,
            "filtered": 0, "rejected": {}}


def build_stats(counts: dict) -> dict:
    """The ``stats.json`` document; raises if the counts do not reconcile."""
    classes: dict[str, dict] = {}
    totals = _empty()
    valid: collections.Counter = collections.Counter()
    damaged: dict[str, str] = {}
    per_file: dict[str, dict] = collections.defaultdict(dict)
    for (word, field), n in sorted(counts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        if field.startswith(DAMAGED):
            reason, path = field[len(DAMAGED):].split(":", 1)
            damaged.setdefault(path, reason)
            continue
        kind = next((k for k in _PER_FILE if field.startswith(k)), None)
        if kind:
            per_file[field[len(kind):]][kind] = n
            continue
        targets = [totals] if word is None else [totals, classes.setdefault(word, _empty())]
        for c in targets:
            if field == READ:
                c["read"] += n
            elif field == FILTERED:
                c["filtered"] += n
            elif field == VALID:
                pass
            elif field.startswith(REJECTED):
                reason = field[len(REJECTED):]
                c["rejected"][reason] = c["rejected"].get(reason, 0) + n
            elif field.startswith(SELECTED):
                c["selected"][field[len(SELECTED):]] += n
        if field == VALID:
            valid[word] += n
    for word, c in classes.items():
        c["unselected"] = valid[word] - sum(c["selected"].values()) - c["rejected"].get(DUPLICATE, 0)
    totals["unselected"] = sum(c["unselected"] for c in classes.values())
    for name, c in [("totals", totals)] + sorted(classes.items()):
        rest = sum(c["selected"].values()) + c["unselected"] + c["filtered"] + sum(c["rejected"].values())
        if rest != c["read"]:
            raise AssertionError("counts of %r do not add up: read %d, accounted %d" % (name, c["read"], rest))
    left = {path: left_out(c) for path, c in sorted(per_file.items()) if left_out(c)}
    return {"totals": totals, "classes": dict(sorted(classes.items())),
            "damaged_files": dict(sorted(damaged.items())), "rejects_left_out": left}


def short_classes(stats: dict, wanted: int) -> list[str]:
    """Classes that got fewer drawings than the splits asked for."""
    return [w for w, c in stats["classes"].items() if sum(c["selected"].values()) < wanted]


def summary(stats: dict, output: str, wanted: int, skipped_outputs: int = 0) -> str:
    """The few lines printed at the end of a run; ``skipped_outputs``: files
    the input matched that pipeline runs wrote, left out."""
    t = stats["totals"]
    short = short_classes(stats, wanted)
    lines = [
        "Read %d lines from %d classes into %s" % (t["read"], len(stats["classes"]), output),
        "  selected: " + ", ".join("%s %d" % (s, n) for s, n in t["selected"].items()),
        "  unselected %d, filtered %d, rejected %d" % (
            t["unselected"], t["filtered"], sum(t["rejected"].values())),
    ]
    for reason, n in sorted(t["rejected"].items()):
        lines.append("    rejected %-24s %d" % (reason, n))
    left = stats.get("rejects_left_out", {})
    if left:
        lines.append("  %d rejected lines of %d files counted, not written to the rejects file (blank lines, "
                     "rejects past a file's first %d, copies past a drawing's first %d): see stats.json" % (
                         sum(left.values()), len(left), REJECTS_PER_FILE, COPIES_PER_DRAWING))
    damaged = stats.get("damaged_files", {})
    if damaged:
        lines.append("  %d damaged input files, read up to the damage (see stats.json):" % len(damaged))
        lines += ["    %s: %s" % (path, reason) for path, reason in list(damaged.items())[:20]]
        if len(damaged) > 20:
            lines.append("    ...")
    if skipped_outputs:
        lines.append("  %d files of the input left out: written by pipeline runs (manifest, stats, "
                     "rejects, shards, ...)" % skipped_outputs)
    if short:
        lines.append("  %d classes had fewer drawings than asked for (see stats.json): %s" % (
            len(short), ", ".join(short[:10]) + (" ..." if len(short) > 10 else "")))
    return "\n".join(lines)


def to_json(stats: dict) -> bytes:
    return json.dumps(stats, indent=1, sort_keys=False).encode("utf-8")
