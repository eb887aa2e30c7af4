"""The HTTP API (Starlette, served by uvicorn).

TF Serving's REST API:

- ``POST /v1/models/<name>[/versions/<v>]:predict`` with
  ``{"instances": [drawing, ...]}``; a drawing is the ndjson ``drawing`` value
  (``[[[x...], [y...]], ...]``, a third time array allowed), an object
  ``{"drawing": ..., "target": "cat"}``, or a row of the export's
  ``serving_default`` inputs (``{"x": [...], "y": [...], "stroke_end": [...],
  "lengths": n}``, as ``deploy.serving_request`` writes it): that body is the
  one TF Serving's container and a Vertex AI endpoint take too. Answers
  ``{"predictions": [{"classes": [...], "scores": [...]}, ...]}`` (top k), plus
  ``target``, ``target_score`` and ``accepted`` (the game's rule: the target's
  probability passes the threshold) when a target is given.
- ``GET /v1/models/<name>``: version status; ``GET /v1/models/<name>/metadata``:
  the signatures, and under ``quickdraw`` the classes, k, threshold and limits.
- ``GET /healthz``; ``GET /examples/<class>``: a held-out drawing of the class;
  ``GET /``: the drawing page.

Every error is ``{"error": one line, "reason": code}`` (TF Serving's
``{"error": ...}`` with a code); the body and each drawing are checked by
``ndjson_format``, the pipeline's own validator, so they get its reasons.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path
from typing import Mapping

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import ndjson_format
from serving.batcher import Batcher, Overloaded

STATIC = Path(__file__).parent / "static"

# The export's serving_default inputs (trainer/export.py): a row of TF Serving's
# row format holds one drawing's.
SIGNATURE_INPUTS = ("x", "y", "stroke_end", "lengths")

# The API's own reasons; a drawing's are ndjson_format.REASONS.
REASONS = {
    "missing_instances": 'the body has no "instances"',
    "bad_instances": '"instances" is not a list',
    "instance_count": "fewer than 1 or more than --max_instances instances",
    "bad_signature": '"signature_name" is not a string',
    "unknown_signature": '"signature_name" is not serving_default',
    "bad_instance": "a row of serving_default's inputs with a missing, extra or mistyped input",
    "bad_target": '"target" is not a string',
    "unknown_target": '"target" is not a class of the model',
    "unknown_model": "no model of that name or version here (404)",
    "no_example": "no held-out drawing of that class (404)",
    "not_found": "no such path (404)",
    "method_not_allowed": "the path does not take that method (405)",
    "too_many_bytes": "the body is over --max_body_bytes (413)",
    "unsupported_content_encoding": "the body has a Content-Encoding (gzip, ...) other than "
                                    "identity (415)",
    "client_disconnect": "the client left before its body ended",
    "overloaded": "more than --max_queue drawings wait for the model (503)",
    "model_error": "the model failed on the batch (500)",
    "internal_error": "a bug in the server (500)",
}

# Refusals made before the body is read to its end: the connection ends with them.
UNREAD_BODY = ("too_many_bytes", "unsupported_content_encoding")


class ModelName(StringConvertor):
    """A model name in a path: no ``:``, so ``GET <name>:predict`` is the predict
    route's 405 rather than a model named ``<name>:predict``."""
    regex = "[^/:]+"


register_url_convertor("model", ModelName())


@dataclasses.dataclass
class Settings:
    """What a deployment tunes (``quickdraw-serve --help`` explains each)."""
    model_name: str = "quickdraw"
    top_k: int = 5
    threshold: float = 0.5
    limits: ndjson_format.Limits = ndjson_format.Limits()
    max_body_bytes: int = 1_000_000
    max_instances: int = 64
    max_batch: int = 64
    batch_wait_ms: float = 1.0
    max_queue: int = 1024


class BadRequest(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


def json_response(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                    status_code=status, media_type="application/json")


def error(status: int, reason: str, message: str, headers: dict | None = None) -> Response:
    response = json_response({"error": message, "reason": reason}, status)
    response.headers.update(headers or {})
    return response


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


def prediction(probabilities: np.ndarray, classes: list[str], class_ids: dict[str, int],
               target: str | None, settings: Settings) -> dict:
    k = min(settings.top_k, len(classes))
    top = np.argpartition(-probabilities, k - 1)[:k]
    top = top[np.argsort(-probabilities[top], kind="stable")]
    answer = {"classes": [classes[i] for i in top],
              "scores": [round(float(probabilities[i]), 6) for i in top]}
    if target is not None:
        score = float(probabilities[class_ids[target]])
        answer.update(target=target, target_score=round(score, 6),
                      accepted=score > settings.threshold)
    return answer


def create_app(model, settings: Settings, examples: dict[str, list] | None = None,
               connection_counts: Mapping[str, int] | None = None) -> Starlette:
    """The ASGI app around a loaded model (``serving.model.ServedModel`` or alike);
    ``/healthz`` shows ``connection_counts``, the connections refused by reason."""
    examples = examples or {}
    connection_counts = {} if connection_counts is None else connection_counts
    classes = list(model.classes)
    class_ids = {c: i for i, c in enumerate(classes)}
    class_set = set(classes)
    batcher = Batcher(model.probabilities, settings.max_batch, settings.batch_wait_ms / 1000,
                      settings.max_queue)
    version = str(model.version)
    chooser = random.Random()

    def check_name(request: Request) -> Response | None:
        name = request.path_params["name"]
        wanted = request.path_params.get("version")
        if name != settings.model_name or (wanted is not None and wanted != version):
            return error(404, "unknown_model", "no model %r%s here; this server serves %r "
                         "version %s" % (name[:100], "" if wanted is None else " version %s"
                                         % wanted[:20], settings.model_name, version))
        return None

    async def predict(request: Request) -> Response:
        missing = check_name(request)
        if missing is not None:
            return missing
        try:
            with batcher.reading():
                body = await read_body(request, settings.max_body_bytes)
                drawings, targets = parse_instances(body, settings, class_set)
            probabilities = await batcher.submit(drawings)
        except BadRequest as e:  # a body not read to its end ends the connection
            return error(e.status, e.reason, str(e),
                         {"connection": "close"} if e.reason in UNREAD_BODY else None)
        except Overloaded as e:
            return error(503, "overloaded", str(e))
        except ClientDisconnect:
            return error(400, "client_disconnect", "the client left before the body ended")
        except Exception as e:  # the model failed on a batch: its requests fail, the server stays
            return error(500, "model_error", "the model failed: %s" % first_line(e))
        return json_response({"predictions": [
            prediction(p, classes, class_ids, t, settings) for p, t in zip(probabilities, targets)]})

    async def model_status(request: Request) -> Response:
        missing = check_name(request)
        return missing or json_response({"model_version_status": [{
            "version": version, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]})

    async def metadata(request: Request) -> Response:
        missing = check_name(request)
        return missing or json_response({
            "model_spec": {"name": settings.model_name, "signature_name": "", "version": version},
            "metadata": {"signature_def": {
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "signature_def": model.signature_defs}},
            "quickdraw": {
                "classes": classes, "top_k": settings.top_k, "threshold": settings.threshold,
                "preprocessing": model.preprocessing,
                "limits": dict(settings.limits._asdict(), max_body_bytes=settings.max_body_bytes,
                               max_instances=settings.max_instances),
                "examples": sorted(examples)}})

    async def example(request: Request) -> Response:
        word = request.path_params["word"]
        if word not in examples:
            return error(404, "no_example", "no held-out drawing of %r (classes with some: %d)"
                         % (word[:100], len(examples)))
        return json_response({"word": word, "drawing": chooser.choice(examples[word])})

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "model": settings.model_name, "version": version,
                              "batches": batcher.batches, "calls": batcher.calls,
                              "drawings": batcher.drawings,
                              "refused_connections": dict(connection_counts)})

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    routes = [
        Route("/", page),
        Route("/healthz", health),
        Route("/examples/{word}", example),
        Route("/v1/models/{name:model}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name:model}/versions/{version:model}:predict", predict,
              methods=["POST"]),
        Route("/v1/models/{name:model}", model_status),
        Route("/v1/models/{name:model}/metadata", metadata),
        Route("/v1/models/{name:model}/versions/{version:model}", model_status),
        Route("/v1/models/{name:model}/versions/{version:model}/metadata", metadata),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: http_error, Exception: internal_error})


async def http_error(request: Request, e: HTTPException) -> Response:
    """Starlette's own refusals (no route, a method the route does not take) in JSON."""
    if e.status_code == 404:
        return error(404, "not_found", "no such path: %s" % request.url.path[:200])
    if e.status_code == 405:
        return error(405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)" % (
            request.method, request.url.path[:200], (e.headers or {}).get("Allow", "")), e.headers)
    return error(e.status_code, "http_%d" % e.status_code, str(e.detail)[:300], e.headers)


async def internal_error(request: Request, e: Exception) -> Response:
    return error(500, "internal_error", "the server failed: %s" % first_line(e))


def first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
