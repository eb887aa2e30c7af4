"""Per-line cost of ``ndjson_format.check_line`` on the real drawings.

Times the validator on the 8,600 lines of the shared sample (simplified
format) and on a quarter of them rewritten in the raw format (float
coordinates and a time row). The machine may be shared, so each variant runs
``--rounds`` times, interleaved, and the least CPU time counts.

    python benchmarks/bench_validator.py
    git show 755fb4a:pipeline/parse.py > /tmp/parse_before.py
    python benchmarks/bench_validator.py --baseline /tmp/parse_before.py

``--baseline`` times a file's ``parse_drawing`` (the validator before
``ndjson_format``) in the same run.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ndjson_format import Drawing, check_line  # noqa: E402

REAL_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_sample"


def load_lines(source: Path) -> tuple[list[bytes], list[bytes]]:
    lines: list[bytes] = []
    for path in sorted(glob.glob(str(source / "*.ndjson"))):
        with open(path, "rb") as f:
            lines += f.read().splitlines()
    raw = []
    for line in lines[::4]:
        d = json.loads(line)
        d["drawing"] = [[[x * 1.75 + 0.5 for x in s[0]], [y * 1.25 + 0.25 for y in s[1]],
                         [10 * i for i in range(len(s[0]))]] for s in d["drawing"]]
        raw.append(json.dumps(d).encode())
    return lines, raw


def baseline(path: str):
    spec = importlib.util.spec_from_file_location("parse_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_drawing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=REAL_SAMPLE)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--baseline", help="a Python file defining parse_drawing(line)")
    args = parser.parse_args()
    lines, raw = load_lines(args.source)
    if not lines:
        raise SystemExit("bench_validator: no *.ndjson in %s" % args.source)
    assert all(isinstance(check_line(l), Drawing) for l in lines + raw)
    variants = {"check_line": check_line}
    if args.baseline:
        variants = {"before": baseline(args.baseline), **variants}
    print("load average %.1f %.1f %.1f" % os.getloadavg())
    for name, data in (("simplified", lines), ("raw", raw)):
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(args.rounds):
            for variant, f in variants.items():
                start = time.process_time()
                for line in data:
                    f(line)
                best[variant] = min(best[variant], time.process_time() - start)
        print("%-10s %5d lines: " % (name, len(data)) + ", ".join(
            "%s %.1f us/line" % (v, t / len(data) * 1e6) for v, t in best.items()))


if __name__ == "__main__":
    main()
