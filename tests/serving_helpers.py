"""Exports for the serving tests: a tiny model (random weights; the tests check the
mechanics, not accuracy) over a pipeline dataset of real drawings, or with the
trainer's own preprocessing as for a dataset made by the tutorial's script.
``python -m serving_helpers [flags]`` serves a model without TensorFlow with
quickdraw-serve's wiring, and the clients below attack a server over real sockets."""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

import tfrecord_schema as schema

CLASSES = ["cat", "dog", "fish", "tree"]
TINY = dict(num_layers=1, num_nodes=16, num_conv=(8, 8), conv_len=(3, 3))


def pipeline_dataset(sample: Path, out: Path, classes: list[str] = CLASSES) -> Path:
    """A dataset made by the pipeline (with transform_output/ and a test split)."""
    from pipeline import run as run_lib
    run_lib.run(["--input=%s" % sample, "--output=%s" % out, "--classes=%s" % ",".join(classes),
                 "--train_observations_per_class=15", "--eval_observations_per_class=5",
                 "--test_observations_per_class=5", "--output_shards=1"])
    return out


def tiny_export(export_dir: Path, classes: list[str] = CLASSES,
                transform_output: str | None = None, top_k: int = 3):
    """Exports a freshly initialised tiny classifier; returns (export dir, Keras model)."""
    from trainer.export import export_model
    from trainer.model import ModelConfig, build_model
    import keras
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(num_classes=len(classes), **TINY))
    export_model(model, classes, str(export_dir), global_step=7, top_k=top_k,
                 transform_output=transform_output)
    return export_dir, model


def dataset_classes(dataset: Path) -> list[str]:
    return (dataset / schema.CLASSES_FILE).read_text().split()


def transform_dir(dataset: Path) -> str:
    return os.path.join(str(dataset), schema.TRANSFORM_DIR)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``quickdraw-serve`` in a subprocess (or ``module``'s server), ready once
    /healthz answers."""

    def __init__(self, *args: str, timeout: float = 180, module: str = "serving.server"):
        import subprocess
        import urllib.request
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        here = Path(__file__).parent
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(here.parent), str(here),
                                                            os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--port=%d" % self.port, *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: %s" % self.process.stdout.read().decode())
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the server did not start in %d s" % timeout)
                time.sleep(0.3)

    def rss_mib(self) -> float:
        with open("/proc/%d/status" % self.process.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        import urllib.request
        return self.process.poll() is None and urllib.request.urlopen(
            self.url + "/healthz", timeout=10).status == 200

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except Exception:
            self.process.kill()
            self.process.wait()


def raw_batch(lines: list[str]) -> dict:
    """Padded absolute points of ndjson lines, as the raw signature takes them."""
    drawings = []
    for line in lines:
        xs, ys, ends = [], [], []
        for stroke in json.loads(line)["drawing"]:
            xs += stroke[0]
            ys += stroke[1]
            ends += [0.0] * (len(stroke[0]) - 1) + [1.0]
        drawings.append((xs, ys, ends))
    n = max(len(d[0]) for d in drawings)
    batch = np.zeros((3, len(drawings), n), np.float32)
    for i, d in enumerate(drawings):
        for c in range(3):
            batch[c, i, :len(d[c])] = d[c]
    return dict(x=batch[0], y=batch[1], stroke_end=batch[2],
                lengths=np.array([len(d[0]) for d in drawings], np.int32))


def expected_probabilities(model, lines: list[str]) -> np.ndarray:
    """parse_line + the Keras model, one drawing at a time (no padding)."""
    import tensorflow as tf

    from pipeline.parse import parse_line

    @tf.function(input_signature=[tf.TensorSpec([1, None, schema.INK_CHANNELS], tf.float32),
                                  tf.TensorSpec([1], tf.int32)])
    def probabilities(ink, lengths):
        return tf.nn.softmax(model({schema.INK: ink, "lengths": lengths}, training=False))

    return np.concatenate([probabilities(ink[np.newaxis], np.array([len(ink)], np.int32)).numpy()
                           for ink, _ in map(parse_line, lines)])


class PointCountModel:
    """Probabilities from a drawing's point count: the server's mechanics without
    TensorFlow."""
    classes = CLASSES
    version = 1
    preprocessing = "test"
    signature_defs: dict = {}

    def __init__(self, seconds: float = 0):
        self.seconds = seconds  # how long each call takes

    def probabilities(self, drawings):
        time.sleep(self.seconds)
        return np.stack([np.eye(len(CLASSES), dtype=np.float32)[len(d) % len(CLASSES)]
                         for d in drawings])


def serve_point_count_model(argv: list[str]) -> None:
    """quickdraw-serve's flags and serving path, with ``PointCountModel``
    (``--model_seconds=S``: each call of the model takes S seconds)."""
    from serving import connection_guard, server
    timed = [a for a in argv if a.startswith("--model_seconds=")]
    seconds = float(timed[-1].split("=", 1)[1]) if timed else 0.0
    args = server.build_parser().parse_args(["--model=none", *(a for a in argv if a not in timed)])
    server.serve(args, server.settings_from(args), connection_guard.limits_from(args),
                 PointCountModel(seconds))


PREDICT_HEAD = b"POST /v1/models/quickdraw:predict HTTP/1.1\r\nHost: x\r\n"
SQUARE_BODY = json.dumps({"instances": [[[[0, 10, 10, 0], [0, 0, 10, 10]]]]}).encode()


def predict_request(body: bytes = SQUARE_BODY) -> bytes:
    return PREDICT_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_answer(sock: socket.socket, data: bytes = b"") -> tuple[int | None, object]:
    """Reads (after ``data``) until the server closes: (status, JSON body, or the
    text of a body that is not JSON), or (None, None) when it closed without an
    answer (or reset the connection)."""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    if b"\r\n\r\n" not in data:
        return None, None
    head, body = data.split(b"\r\n\r\n", 1)
    try:
        return int(head.split(b" ", 2)[1]), json.loads(body)
    except ValueError:
        return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


def exchange(port: int, request: bytes, timeout: float = 30) -> tuple[int | None, object]:
    """One request on a connection of its own, which the server closes or which is
    closed after the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n", 1))
        return read_answer(sock)


def header_flood(port: int, size: int, chunk: int = 1 << 20) -> int:
    """Sends a request head with one endless header (``size`` bytes of it at most);
    the bytes sent before the server closed the connection."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(PREDICT_HEAD + b"X-A: ")
            block = b"a" * chunk
            while sent < size:
                sock.sendall(block)
                sent += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return sent


class SlowClients:
    """``count`` connections that send ``first`` and then one byte of ``rest`` every
    ``interval`` seconds, for at most ``duration``; ``closed_after[i]`` is when the
    server ended connection i (seconds from its start), ``answers[i]`` what it said."""

    def __init__(self, port: int, count: int, first: bytes, rest: bytes, interval: float,
                 duration: float):
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        self.closed_after: list[float | None] = [None] * count
        self.answers: list[tuple] = [(None, None)] * count
        self._start = time.monotonic()
        self._stop = threading.Event()
        for sock in self.sockets:
            sock.sendall(first)
            sock.setblocking(False)
        self._thread = threading.Thread(target=self._trickle, args=(rest, interval, duration),
                                        daemon=True)
        self._thread.start()

    def _trickle(self, rest: bytes, interval: float, duration: float) -> None:
        position = 0
        while (time.monotonic() - self._start < duration and None in self.closed_after
               and not self._stop.is_set()):
            for i, sock in enumerate(self.sockets):
                if self.closed_after[i] is None:
                    self._poll(i, sock, rest[position:position + 1])
            position = (position + 1) % max(1, len(rest))
            time.sleep(interval)

    def _poll(self, i: int, sock: socket.socket, byte: bytes) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            try:
                if byte:
                    sock.send(byte)
                return
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                data = b""
        except ConnectionResetError:
            data = b""
        self.closed_after[i] = time.monotonic() - self._start
        if data:  # an answer: read it to its end
            sock.settimeout(5)
            self.answers[i] = read_answer(sock, data)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def seconds_until_served(port: int, timeout: float, pause: float = 0.1) -> tuple[float | None, int]:
    """A client that retries a prediction until it gets a 200: seconds it took (None
    past ``timeout``) and the refusals it got on the way."""
    start, refusals = time.monotonic(), 0
    while time.monotonic() - start < timeout:
        try:
            status, _ = exchange(port, predict_request(), timeout=max(0.5, timeout))
        except OSError:
            status = None
        if status == 200:
            return time.monotonic() - start, refusals
        refusals += 1
        time.sleep(pause)
    return None, refusals


if __name__ == "__main__":
    serve_point_count_model(sys.argv[1:])
