"""A predict request: its body read under its limits, then turned into
validated drawings and targets, in TF Serving's formats (the ndjson
``drawing``, an object with a ``target``, or a row of the export's
``serving_default`` inputs). Every refusal is a ``BadRequest`` with the
pipeline validator's reason where a drawing is at fault (``ndjson_format``)."""
from __future__ import annotations

import math

import numpy as np
from starlette.requests import Request

import ndjson_format
from serving.settings import Settings

# The export's serving_default inputs (trainer/export.py): a row of TF Serving's
# row format holds one drawing's.
SIGNATURE_INPUTS = ("x", "y", "stroke_end", "lengths")

# Refusals made before the body is read to its end: the connection ends with them.
UNREAD_BODY = ("too_many_bytes", "unsupported_content_encoding")


class BadRequest(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (declared or sent).
    A content coding (gzip, ...) is refused rather than read as JSON: decoding
    it would take the limit off the decoded size, and ignoring it would give a
    compressed body the reasons of a damaged one."""
    codings = [c.strip().lower() for value in request.headers.getlist("content-encoding")
               for c in value.split(",")]
    if any(c not in ("", "identity") for c in codings):
        raise BadRequest(415, "unsupported_content_encoding", "Content-Encoding %s: the body "
                         "must be sent uncompressed" % ", ".join(codings)[:100])
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadRequest(413, "too_many_bytes", "the body is over %d bytes" % limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "too_many_bytes", "the body is over %d bytes" % limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_instances(body: bytes, settings: Settings,
                    classes: set[str]) -> tuple[list[np.ndarray], list[str | None]]:
    """Validated points and targets of a predict request; BadRequest otherwise.

    The body is read as the pipeline reads a line (a byte-order mark accepted;
    NaN, Infinity and numbers that overflow read, to be refused as the
    drawing's ``non_finite_coordinate``)."""
    request = ndjson_format.load_line(body, settings.limits)
    if isinstance(request, ndjson_format.Reject):
        raise BadRequest(400, request.reason, "the body: %s" % ndjson_format.REASONS.get(
            request.reason, request.reason))
    if "instances" not in request:
        raise BadRequest(400, "missing_instances", 'the body must be an object with an '
                         '"instances" list (TF Serving\'s row format)')
    if type(request["instances"]) is not list:
        raise BadRequest(400, "bad_instances", '"instances" must be a list, not %s'
                         % json_type(request["instances"]))
    signature = request.get("signature_name", "serving_default")
    if type(signature) is not str:
        raise BadRequest(400, "bad_signature", '"signature_name" must be a string, not %s'
                         % json_type(signature))
    if signature not in ("serving_default", ""):
        raise BadRequest(400, "unknown_signature", "signature_name %r: this server serves "
                         "serving_default" % signature[:100])
    instances = request["instances"]
    if not 1 <= len(instances) <= settings.max_instances:
        raise BadRequest(400, "instance_count", "1 to %d instances per request, not %d"
                         % (settings.max_instances, len(instances)))
    drawings, targets = [], []
    for i, instance in enumerate(instances):
        target = None
        if type(instance) is dict and "drawing" not in instance and \
                any(name in instance for name in SIGNATURE_INPUTS):
            points = signature_row(instance, settings.limits)
        else:
            if type(instance) is dict:
                target = instance.get("target")
                if target is not None and type(target) is not str:
                    raise BadRequest(400, "bad_target", "instance %d: target must be a string, "
                                     "not %s" % (i, json_type(target)))
                if target is not None and target not in classes:
                    raise BadRequest(400, "unknown_target", "instance %d: target %r is not a "
                                     "class of the model" % (i, target[:100]))
                instance = instance.get("drawing")
            points = ndjson_format.check_strokes(instance, settings.limits)
        if isinstance(points, ndjson_format.Reject):
            raise BadRequest(400, points.reason, "instance %d: %s (%s)" % (
                i, points.reason, ndjson_format.REASONS.get(points.reason, "invalid drawing")))
        if isinstance(points, str):
            raise BadRequest(400, "bad_instance", "instance %d: %s" % (i, points))
        drawings.append(points)
        targets.append(target)
    return drawings, targets


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def signature_row(row: dict, limits: ndjson_format.Limits) -> np.ndarray | ndjson_format.Reject | str:
    """The points of a row of serving_default's inputs (padded ``x``, ``y``,
    ``stroke_end`` and the point count ``lengths``): checked by the validator as
    the strokes they cut into, with ``stroke_end`` kept as given, so that the
    model sees what TF Serving would feed it. A string says what is malformed."""
    if sorted(row) != sorted(SIGNATURE_INPUTS):
        return "a row of serving_default's inputs has x, y, stroke_end and lengths, not %s" \
            % ", ".join(sorted(str(k)[:40] for k in row)[:10])
    xs, ys, ends, n = row["x"], row["y"], row["stroke_end"], row["lengths"]
    if type(xs) is not list or type(ys) is not list or type(ends) is not list:
        return "x, y and stroke_end must be lists"
    if len(xs) != len(ys):
        return ndjson_format.Reject(ndjson_format.XY_LENGTH_MISMATCH)
    if len(ends) != len(xs):
        return "stroke_end has %d values for %d points" % (len(ends), len(xs))
    if type(n) is not int or not 0 <= n <= len(xs):
        return "lengths must be an integer from 0 to the %d points of x" % len(xs)
    # The padding past ``lengths`` is fed to the model too (TF Serving would
    # refuse a row it cannot make a float tensor of): numbers, and finite.
    padding = xs[n:] + ys[n:] + ends[n:]
    if not all(type(v) is int or type(v) is float for v in padding):
        return "x, y and stroke_end must hold numbers, also past lengths"
    if not all(math.isfinite(v) for v in padding):
        return ndjson_format.Reject(ndjson_format.NON_FINITE)
    if limits.max_points and n > limits.max_points:
        return ndjson_format.Reject(ndjson_format.TOO_MANY_POINTS)
    ends = ends[:n]
    if not all((type(e) is int or type(e) is float) and (e == 0 or e == 1) for e in ends):
        return "stroke_end must hold 0 or 1"
    strokes, start = [], 0
    for i, end in enumerate(ends):
        if end:
            strokes.append([xs[start:i + 1], ys[start:i + 1]])
            start = i + 1
    if start < n:
        strokes.append([xs[start:n], ys[start:n]])
    points = ndjson_format.check_strokes(strokes, limits)
    if not isinstance(points, ndjson_format.Reject):
        points[:, 2] = ends
    return points
