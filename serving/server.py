"""``quickdraw-serve --model=DIR``: serves an export over HTTP (see ``serving.app``)."""
from __future__ import annotations

import argparse
import logging
import socket
import sys

import ndjson_format
import command_line
from serving import connection_guard
from serving.app import Settings, create_app


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    p = command_line.Parser("quickdraw-serve", "serving.server", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="export directory (a SavedModel)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    p.add_argument("--port", type=int, default=8501, help="TF Serving's REST port by default")
    p.add_argument("--model_name", default=d.model_name, help="the <name> in /v1/models/<name>")
    p.add_argument("--examples", default=None,
                   help="dataset folder (its eval and test splits) or TFRecord pattern of "
                        "held-out drawings for the page's 'show me' button")
    p.add_argument("--top_k", type=int, default=d.top_k, help="classes per prediction")
    p.add_argument("--threshold", type=float, default=d.threshold,
                   help="a target's probability above which the drawing is accepted")
    p.add_argument("--max_points", type=int, default=d.limits.max_points,
                   help="points per drawing (0: no cap)")
    p.add_argument("--max_strokes", type=int, default=d.limits.max_strokes,
                   help="strokes per drawing (0: no cap)")
    p.add_argument("--max_body_bytes", type=int, default=d.max_body_bytes,
                   help="bytes per request body; larger ones get a 413")
    p.add_argument("--max_instances", type=int, default=d.max_instances,
                   help="drawings per request")
    p.add_argument("--max_batch", type=int, default=d.max_batch, help="drawings per model call")
    p.add_argument("--batch_wait_ms", type=float, default=d.batch_wait_ms,
                   help="how long an idle model waits for more drawings to batch")
    p.add_argument("--max_queue", type=int, default=d.max_queue,
                   help="drawings waiting for the model before requests get a 503")
    connection_guard.add_flags(p)
    p.add_argument("--access_log", action="store_true", help="log every request")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    for name in ("top_k", "max_body_bytes", "max_instances", "max_batch", "max_queue"):
        if getattr(args, name) <= 0:
            raise ValueError("--%s must be positive" % name)
    if args.max_points < 0 or args.max_strokes < 0 or args.batch_wait_ms < 0:
        raise ValueError("--max_points, --max_strokes and --batch_wait_ms cannot be negative")
    if not 0.0 <= args.threshold <= 1.0:
        raise ValueError("--threshold must be in [0, 1]")
    return Settings(model_name=args.model_name, top_k=args.top_k, threshold=args.threshold,
                    limits=ndjson_format.Limits(max_points=args.max_points,
                                                max_bytes=args.max_body_bytes,
                                                max_strokes=args.max_strokes),
                    max_body_bytes=args.max_body_bytes, max_instances=args.max_instances,
                    max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                    max_queue=args.max_queue)


def check_port(host: str, port: int) -> None:
    """Binds and releases ``host:port`` as the server will, so that a port in
    use or a host that is not this machine's is a one-line error before the
    model loads (and before the line that says where it serves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as e:
        raise ValueError("--host=%s --port=%s: %s" % (host, port, e)) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise ValueError("cannot listen on %s:%d: %s" % (host, port, e.strerror or e)) from None


def main(argv: list[str] | None = None) -> int:
    """Runs the server until interrupted; exit status 2 for bad options or model."""
    return command_line.run_command(lambda: _serve(build_parser().parse_args(argv)))


def _serve(args: argparse.Namespace) -> int:
    from serving.examples import ExamplesError, load_examples
    from serving.model import ServedModel
    from trainer.errors import TrainerError
    try:
        settings = settings_from(args)
        limits = connection_guard.limits_from(args)
        check_port(args.host, args.port)
        model = ServedModel(args.model)
        examples = load_examples(args.examples) if args.examples else None
    except (ValueError, TrainerError, ExamplesError) as e:
        return command_line.report(e)
    print("Serving %s (%d classes, version %s, preprocessing %s) at http://%s:%d/ "
          "(model name %r)" % (args.model, len(model.classes), model.version,
                               model.preprocessing, args.host, args.port, settings.model_name),
          flush=True)
    serve(args, settings, limits, model, examples)
    return 0


# uvicorn's warnings about one client's bad request, which any client can make
# it print at will; the guard answers them in JSON and counts them in /healthz.
_CLIENT_NOISE = ("Invalid HTTP request received", "Unsupported upgrade request",
                 "No supported WebSocket library detected")


def _client_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_CLIENT_NOISE)


def serve(args: argparse.Namespace, settings: Settings, limits: connection_guard.ConnectionLimits,
          model, examples: dict[str, list] | None = None) -> None:
    """Serves ``model`` on ``--host``:``--port`` until interrupted, on uvicorn's h11
    parser with the connection guard (``serving.connection_guard``). WebSocket
    upgrades are off: the API has none, and an upgraded connection would leave
    the guard's limits and count."""
    import uvicorn
    logging.getLogger("uvicorn.error").addFilter(_client_noise)
    protocol = connection_guard.guarded_protocol(limits)
    uvicorn.run(create_app(model, settings, examples, protocol.counts), host=args.host,
                port=args.port, http=protocol, ws="none",
                h11_max_incomplete_event_size=limits.max_header_bytes,
                access_log=args.access_log, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    sys.exit(main())
