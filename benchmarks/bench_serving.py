"""Load test of ``quickdraw-serve`` on localhost: concurrent clients, each
sending one real drawing per request to TF Serving's predict API over a
kept-alive connection, for a bounded time. Reports requests/s, p50/p90/p99
latency, the mean batch the server formed, and the machine's load average
(the clients share the CPU with the server, as they would on one machine).

    python benchmarks/bench_serving.py [--model=EXPORT] [--clients 1,8,32] [--seconds 15]

With ``--profile`` each row also samples the server with py-spy (``pip install
py-spy``) and prints where its two threads spent the row's wall time: the event
loop (h11, the connection guard, Starlette, validation, JSON encoding, socket
writes, idle) and the model thread (the TensorFlow call, building the batch,
idle).

Without ``--model`` it exports the tutorial's default-size classifier (344
classes, random weights: latency does not depend on the weights) to a
temporary folder first. The first line is the floor: the same drawings through
the export in the benchmark's own process, one call each, no HTTP. The second
compares, in that process, batches of 8 served as one call padded to the
longest drawing and cut into calls by length (``serving.batcher.plan_calls``).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = [REPO / "data" / "real_sample", REPO / "data" / "sample"]


def drawings(limit: int = 2000) -> list[bytes]:
    """Request bodies of one real drawing each."""
    sample = next(p for p in SAMPLES if p.is_dir())
    bodies = []
    for path in sorted(sample.glob("*.ndjson")):
        for line in path.read_text().splitlines()[:6]:
            bodies.append(json.dumps({"instances": [json.loads(line)["drawing"]]}).encode())
    return bodies[::max(1, len(bodies) // limit)]


def default_export(directory: str) -> str:
    import keras

    from trainer.export import export_model
    from trainer.model import ModelConfig, build_model
    keras.utils.set_random_seed(0)
    classes = ["class_%03d" % i for i in range(344)]
    export_model(build_model(ModelConfig(num_classes=len(classes))), classes, directory, 0)
    return directory


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "serving.server", "--model=%s" % model,
                                "--port=%d" % port, *extra], env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2).read()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the server exited with %d" % process.returncode)
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not start")


def health(port: int) -> dict:
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=10) as r:
        return json.load(r)


def run_clients(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads sending requests back to back for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = index
        while time.monotonic() < stop:
            body = bodies[n % len(bodies)]
            n += clients
            start = time.perf_counter()
            connection.request("POST", "/v1/models/quickdraw:predict", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies[index].append(time.perf_counter() - start)
            if response.status != 200:
                errors[index] += 1
        connection.close()

    before = health(port)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    after = health(port)
    ms = np.array([x for per in latencies for x in per]) * 1000
    batches = max(1, after["batches"] - before["batches"])
    return {"clients": clients, "requests": int(ms.size), "errors": sum(errors),
            "requests_per_s": round(ms.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_batch": round((after["drawings"] - before["drawings"]) / batches, 2),
            "drawings_per_call": round((after["drawings"] - before["drawings"])
                                       / max(1, after.get("calls", 0) - before.get("calls", 0)), 2),
            "load_average_1m": round(os.getloadavg()[0], 2)}


# Where a sampled stack is, by its innermost frame that names one of these.
PROFILE_PARTS = [("idle", "EpollSelector.select"), ("idle", "_worker (concurrent/futures/thread.py"),
                 ("TensorFlow call", "tensorflow/"), ("batch building", "probabilities (serving/model.py"),
                 ("h11", "h11/"), ("uvicorn", "uvicorn/"), ("connection guard", "connection_guard.py"),
                 ("validation", "parse_instances"), ("validation", "ndjson_format.py"),
                 ("JSON encoding", "json_response"), ("JSON encoding", "prediction (serving/app.py"),
                 ("batcher", "batcher.py"), ("Starlette", "starlette/"),
                 ("socket write", "write (asyncio/selector_events"),
                 ("socket read", "_read_ready"), ("asyncio", "asyncio/")]


def profile_breakdown(raw: str) -> dict:
    """Per thread (event loop, model), the share of samples in each part, from
    py-spy's raw output (``thread;frame;...;frame count`` per line)."""
    shares: dict[str, dict[str, float]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = "model" if "model" in frames[0] else "event loop"
        part = next((name for frame in reversed(frames[1:]) for name, key in PROFILE_PARTS
                     if key in frame), "other")
        shares.setdefault(thread, {}).setdefault(part, 0.0)
        shares[thread][part] += int(count)
    for parts in shares.values():
        total = sum(parts.values())
        for name in parts:
            parts[name] = round(100 * parts[name] / total, 1)
    return {thread: dict(sorted(parts.items(), key=lambda kv: -kv[1]))
            for thread, parts in shares.items()}


def profiled(pid: int, seconds: float, run: Callable[[], dict]) -> dict:
    """``run()``, with the server sampled by py-spy meanwhile; its breakdown added."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        py_spy = Path(sys.executable).with_name("py-spy")
        spy = subprocess.Popen([str(py_spy) if py_spy.exists() else "py-spy", "record", "--pid", str(pid), "--threads", "--idle",
                                "--rate", "200", "--format", "raw", "--nonblocking",
                                "--duration", str(int(seconds)), "-o", out.name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = run()
        spy.wait()
        result["profile_percent"] = profile_breakdown(Path(out.name).read_text())
    return result


def model_only(model: str, bodies: list[bytes], n: int = 200) -> dict:
    """The same drawings through the export in this process, one per call: the floor
    that the HTTP server, JSON and validation add to."""
    import ndjson_format
    from serving.model import ServedModel
    served = ServedModel(model)
    points = [ndjson_format.check_strokes(json.loads(b)["instances"][0]) for b in bodies]
    for p in points[:10]:
        served.probabilities([p])
    ms = []
    for i in range(n):
        start = time.perf_counter()
        served.probabilities([points[i % len(points)]])
        ms.append((time.perf_counter() - start) * 1000)
    return {"model_only_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "model_only_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def batch_plans(model: str, bodies: list[bytes], clients: int = 8, rounds: int = 60) -> dict:
    """What cutting a batch into calls by length gives the model thread: sets of
    ``clients`` real drawings, each served as one call padded to its longest and
    as ``plan_calls`` cuts it, in turn; a drawing's time is when its call ends."""
    import random

    import ndjson_format
    from serving.batcher import plan_calls
    from serving.model import ServedModel
    served = ServedModel(model)
    points = [ndjson_format.check_strokes(json.loads(b)["instances"][0]) for b in bodies]
    chooser = random.Random(0)
    times: dict[str, list[float]] = {"one_call": [], "by_length": []}
    totals: dict[str, list[float]] = {"one_call": [], "by_length": []}
    for _ in range(rounds):
        batch = chooser.sample(points, clients)
        plans = {"one_call": [list(range(clients))],
                 "by_length": plan_calls([len(d) for d in batch], [1] * clients)}
        for name, calls in plans.items():
            start = time.perf_counter()
            for call in calls:
                served.probabilities([batch[i] for i in call])
                times[name] += [(time.perf_counter() - start) * 1000] * len(call)
            totals[name].append((time.perf_counter() - start) * 1000)
    result = {"batch_of": clients}
    for name in times:
        result[name + "_drawing_p50_ms"] = round(float(np.percentile(times[name], 50)), 2)
        result[name + "_batch_p50_ms"] = round(float(np.percentile(totals[name], 50)), 2)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="export to serve (default: see above)")
    p.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    p.add_argument("--seconds", type=float, default=15, help="per client count")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--port", type=int, default=8599)
    p.add_argument("--server_args", default="", help="extra quickdraw-serve options")
    p.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    args = p.parse_args(argv)
    bodies = drawings()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_export(os.path.join(tmp, "export"))
        server = start_server(model, args.port, args.server_args.split())
        try:
            print("cores %d, load average before: %s" % (os.cpu_count(), os.getloadavg()),
                  flush=True)
            run_clients(args.port, bodies, 4, args.warmup)
            results = [model_only(model, bodies), batch_plans(model, bodies)]
            for result in results:
                print(json.dumps(result), flush=True)
            for clients in [int(c) for c in args.clients.split(",")]:
                def row(clients=clients):
                    return run_clients(args.port, bodies, clients, args.seconds)
                result = profiled(server.pid, args.seconds, row) if args.profile else row()
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            server.terminate()
            server.wait(30)
    return results


if __name__ == "__main__":
    main()
