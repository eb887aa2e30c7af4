"""The HTTP API (Starlette, served by uvicorn).

TF Serving's REST API, so that clients move between this server, TF Serving's
container and a Vertex AI endpoint unchanged:

- ``POST /v1/models/<name>[/versions/<v>]:predict`` with
  ``{"instances": [drawing, ...]}``; a drawing is the ndjson ``drawing`` value
  (``[[[x...], [y...]], ...]``, a third time array allowed) or an object
  ``{"drawing": ..., "target": "cat"}``. Answers ``{"predictions": [{"classes":
  [...], "scores": [...]}, ...]}`` (top k), plus ``target``, ``target_score`` and
  ``accepted`` (the game's rule: the target's probability passes the threshold)
  when a target is given.
- ``GET /v1/models/<name>``: version status; ``GET /v1/models/<name>/metadata``:
  the signatures, and under ``quickdraw`` the classes, k, threshold and limits.
- ``GET /healthz``; ``GET /examples/<class>``: a held-out drawing of the class;
  ``GET /``: the drawing page.

A bad request gets a 4xx and ``{"error": one line, "reason": code}``; the
validation is ``ndjson_format.check_strokes``, the pipeline's own.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import ndjson_format
from serving.batcher import Batcher, Overloaded

STATIC = Path(__file__).parent / "static"


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


def error(status: int, reason: str, message: str) -> Response:
    return json_response({"error": message, "reason": reason}, status)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (declared or sent)."""
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
    """Validated points and targets of a predict request; BadRequest otherwise."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(400, "invalid_json", "the body is not JSON: %s" % e) from None
    if not isinstance(request, dict) or not isinstance(request.get("instances"), list):
        raise BadRequest(400, "missing_instances",
                         'the body must be an object with an "instances" list')
    signature = request.get("signature_name", "serving_default")
    if signature not in ("serving_default", ""):
        raise BadRequest(400, "unknown_signature",
                         "signature_name %r: this server serves serving_default" % signature)
    instances = request["instances"]
    if not 1 <= len(instances) <= settings.max_instances:
        raise BadRequest(400, "instance_count", "1 to %d instances per request, not %d"
                         % (settings.max_instances, len(instances)))
    drawings, targets = [], []
    for i, instance in enumerate(instances):
        target = None
        if isinstance(instance, dict):
            target = instance.get("target")
            if target is not None and target not in classes:
                raise BadRequest(400, "unknown_target",
                                 "instance %d: target %r is not a class of the model"
                                 % (i, str(target)[:100]))
            instance = instance.get("drawing")
        points = ndjson_format.check_strokes(instance, settings.limits)
        if isinstance(points, ndjson_format.Reject):
            raise BadRequest(400, points.reason, "instance %d: %s (%s)" % (
                i, points.reason, ndjson_format.REASONS.get(points.reason, "invalid drawing")))
        drawings.append(points)
        targets.append(target)
    return drawings, targets


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


def create_app(model, settings: Settings, examples: dict[str, list] | None = None) -> Starlette:
    """The ASGI app around a loaded model (``serving.model.ServedModel`` or alike)."""
    examples = examples or {}
    classes = list(model.classes)
    class_ids = {c: i for i, c in enumerate(classes)}
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
            body = await read_body(request, settings.max_body_bytes)
            drawings, targets = parse_instances(body, settings, set(classes))
            probabilities = await batcher.submit(drawings)
        except BadRequest as e:
            return error(e.status, e.reason, str(e))
        except Overloaded as e:
            return error(503, "overloaded", str(e))
        except ClientDisconnect:
            return error(400, "client_disconnect", "the client left before the body ended")
        except Exception as e:  # the model failed on a batch: its requests fail, the server stays
            message = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            return error(500, "model_error", "the model failed: %s" % message)
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
                              "batches": batcher.batches, "drawings": batcher.drawings})

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
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}", model_status),
        Route("/v1/models/{name}/metadata", metadata),
        Route("/v1/models/{name}/versions/{version}", model_status),
        Route("/v1/models/{name}/versions/{version}/metadata", metadata),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
