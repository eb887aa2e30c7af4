"""``python -m deploy.serving_request``: ndjson drawings -> the JSON body of a
predict request for TF Serving's container or a Vertex AI endpoint.

Those engines run the export's ``serving_default`` signature as it is, so a
request carries its inputs: each drawing's absolute ``x``, ``y`` and
``stroke_end`` per point and its point count ``lengths``, padded with zeros to
the longest drawing of the request (TF Serving's row format needs equal
shapes). ``quickdraw-serve`` takes this body as it is (and the ndjson
strokes themselves), so one request works with all three. Drawings are
checked with ``ndjson_format``, as the pipeline and the server check them.

    python -m deploy.serving_request --input=drawings.ndjson > request.json
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import ndjson_format

# serving_default's inputs (trainer/export.py): name -> (dtype, rank)
SIGNATURE_INPUTS = {"x": ("float32", 2), "y": ("float32", 2), "stroke_end": ("float32", 2),
                    "lengths": ("int32", 1)}


def instances(drawings: list[np.ndarray]) -> list[dict]:
    """Row-format instances of validated ``[n, 3]`` points, padded to one length."""
    longest = max(len(d) for d in drawings)
    rows = []
    for points in drawings:
        padded = np.zeros((longest, 3), np.float32)
        padded[:len(points)] = points
        rows.append({"x": padded[:, 0].tolist(), "y": padded[:, 1].tolist(),
                     "stroke_end": padded[:, 2].tolist(), "lengths": len(points)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Prints the request; exit status 2 when no line is a drawing."""
    p = argparse.ArgumentParser(prog="python -m deploy.serving_request",
                                description=__doc__.split("\n")[0])
    p.add_argument("--input", default="-", help="ndjson file, or - for stdin")
    p.add_argument("--max_points", type=int, default=ndjson_format.Limits().max_points)
    args = p.parse_args(argv)
    limits = ndjson_format.Limits(max_points=args.max_points)
    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    drawings = []
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            result = ndjson_format.check_line(line, limits)
            if isinstance(result, ndjson_format.Reject):
                print("line %d rejected: %s" % (number, result.reason), file=sys.stderr)
                continue
            drawings.append(result.points)
    if not drawings:
        print("error: no drawing in %s" % args.input, file=sys.stderr)
        return 2
    json.dump({"instances": instances(drawings)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
