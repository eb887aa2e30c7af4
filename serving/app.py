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

from serving.batcher import Batcher, Overloaded
from serving.requests import UNREAD_BODY, BadRequest, parse_instances, read_body
from serving.settings import Settings

STATIC = Path(__file__).parent / "static"

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

class ModelName(StringConvertor):
    """A model name in a path: no ``:``, so ``GET <name>:predict`` is the predict
    route's 405 rather than a model named ``<name>:predict``."""
    regex = "[^/:]+"


register_url_convertor("model", ModelName())


def json_response(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                    status_code=status, media_type="application/json")


def error(status: int, reason: str, message: str, headers: dict | None = None) -> Response:
    response = json_response({"error": message, "reason": reason}, status)
    response.headers.update(headers or {})
    return response


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


class Endpoints:
    """The handlers of the API around one loaded model (``serving.model.ServedModel``
    or alike), sharing its batcher; ``/healthz`` shows ``connection_counts``,
    the connections refused by reason."""

    def __init__(self, model, settings: Settings, examples: dict[str, list] | None = None,
                 connection_counts: Mapping[str, int] | None = None):
        self.model, self.settings = model, settings
        self.examples = examples or {}
        self.connection_counts = {} if connection_counts is None else connection_counts
        self.classes = list(model.classes)
        self.class_ids = {c: i for i, c in enumerate(self.classes)}
        self.class_set = set(self.classes)
        self.batcher = Batcher(model.probabilities, settings.max_batch,
                               settings.batch_wait_ms / 1000, settings.max_queue)
        self.version = str(model.version)
        self.chooser = random.Random()

    def unknown_model(self, request: Request) -> Response | None:
        """The 404 of a path naming another model or version, else None."""
        name = request.path_params["name"]
        wanted = request.path_params.get("version")
        if name != self.settings.model_name or (wanted is not None and wanted != self.version):
            return error(404, "unknown_model", "no model %r%s here; this server serves %r "
                         "version %s" % (name[:100], "" if wanted is None else " version %s"
                                         % wanted[:20], self.settings.model_name, self.version))
        return None

    async def predict(self, request: Request) -> Response:
        missing = self.unknown_model(request)
        if missing is not None:
            return missing
        settings = self.settings
        try:
            with self.batcher.reading():
                body = await read_body(request, settings.max_body_bytes)
                drawings, targets = parse_instances(body, settings, self.class_set)
            probabilities = await self.batcher.submit(drawings)
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
            prediction(p, self.classes, self.class_ids, t, settings)
            for p, t in zip(probabilities, targets)]})

    async def model_status(self, request: Request) -> Response:
        return self.unknown_model(request) or json_response({"model_version_status": [{
            "version": self.version, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]})

    async def metadata(self, request: Request) -> Response:
        settings = self.settings
        return self.unknown_model(request) or json_response({
            "model_spec": {"name": settings.model_name, "signature_name": "",
                           "version": self.version},
            "metadata": {"signature_def": {
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "signature_def": self.model.signature_defs}},
            "quickdraw": {
                "classes": self.classes, "top_k": settings.top_k, "threshold": settings.threshold,
                "preprocessing": self.model.preprocessing,
                "limits": dict(settings.limits._asdict(), max_body_bytes=settings.max_body_bytes,
                               max_instances=settings.max_instances),
                "examples": sorted(self.examples)}})

    async def example(self, request: Request) -> Response:
        word = request.path_params["word"]
        if word not in self.examples:
            return error(404, "no_example", "no held-out drawing of %r (classes with some: %d)"
                         % (word[:100], len(self.examples)))
        return json_response({"word": word, "drawing": self.chooser.choice(self.examples[word])})

    async def health(self, request: Request) -> Response:
        batcher = self.batcher
        return json_response({"status": "ok", "model": self.settings.model_name,
                              "version": self.version, "batches": batcher.batches,
                              "calls": batcher.calls, "drawings": batcher.drawings,
                              "refused_connections": dict(self.connection_counts)})

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await self.batcher.start()
        yield
        await self.batcher.stop()


def create_app(model, settings: Settings, examples: dict[str, list] | None = None,
               connection_counts: Mapping[str, int] | None = None) -> Starlette:
    """The ASGI app: TF Serving's routes, the page, and JSON for every refusal."""
    api = Endpoints(model, settings, examples, connection_counts)
    model_path, version_path = "/v1/models/{name:model}", "/v1/models/{name:model}/versions/{version:model}"
    routes = [
        Route("/", api.page),
        Route("/healthz", api.health),
        Route("/examples/{word}", api.example),
        Route(model_path + ":predict", api.predict, methods=["POST"]),
        Route(version_path + ":predict", api.predict, methods=["POST"]),
        Route(model_path, api.model_status),
        Route(model_path + "/metadata", api.metadata),
        Route(version_path, api.model_status),
        Route(version_path + "/metadata", api.metadata),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=api.lifespan, exception_handlers={
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
