"""Hostile clients against a running ``quickdraw-serve`` on localhost: the
server's memory while four connections each send an endless header, how long
a good client waits while slow clients hold every connection slot (sending
their heads, or their bodies, a byte a second), and how long the server
accepts a body sent a byte a second.

    quickdraw-serve --model=EXPORT --port=8501 &
    python benchmarks/bench_serving_attack.py --port=8501 --pid=$!

The clients are those of the test suite (``tests/serving_helpers.py``); each
attack stops after ``--give_up`` seconds.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from serving_helpers import (PREDICT_HEAD, SQUARE_BODY, SlowClients,  # noqa: E402
                             header_flood, seconds_until_served)


def rss_mib(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def flood(port: int, pid: int, connections: int, size: int) -> None:
    seconds_until_served(port, timeout=60)  # the model has run once: its memory is counted
    before = rss_mib(pid)
    peak = before
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        floods = [pool.submit(header_flood, port, size) for _ in range(connections)]
        while not all(f.done() for f in floods):
            peak = max(peak, rss_mib(pid))
            time.sleep(0.02)
    taken = [f.result() for f in floods]
    print("header flood, %d connections of %d MiB each: server RSS %.0f MiB before, %.0f MiB "
          "peak (+%.0f), %.0f MiB after; bytes sent before the server closed: %s; %.1f s"
          % (connections, size >> 20, before, peak, peak - before, rss_mib(pid),
             ", ".join("%.1f MiB" % (t / 2 ** 20) for t in taken), time.monotonic() - start),
          flush=True)


def slots(port: int, count: int, give_up: float, first: bytes, rest: bytes, what: str) -> None:
    slow = SlowClients(port, count, first, rest, interval=1.0, duration=give_up)
    try:
        time.sleep(1.0)
        waited, refusals = seconds_until_served(port, timeout=give_up, pause=0.2)
        slow.wait(give_up)
        closed = [t for t in slow.closed_after if t is not None]
        print("%d slow clients (%s, a byte a second): a good client was %s after %d refusals; "
              "the server closed %d of them, the last after %.1f s" % (
                  count, what, "served after %.2f s" % waited if waited is not None else
                  "not served within %.0f s" % give_up, refusals, len(closed),
                  max(closed, default=float("nan"))), flush=True)
    finally:
        slow.close()


def slow_body(port: int, give_up: float) -> None:
    head = PREDICT_HEAD + b"Content-Length: %d\r\n\r\n" % len(SQUARE_BODY)
    slow = SlowClients(port, 1, head, SQUARE_BODY, interval=1.0, duration=give_up)
    slow.wait(give_up + 5)
    closed = slow.closed_after[0]
    print("a body sent a byte a second: %s, answer %s" % (
        "ended by the server after %.1f s" % closed if closed is not None else
        "still accepted after %.0f s" % give_up, slow.answers[0]), flush=True)
    slow.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--pid", type=int, required=True, help="the server's process id (its RSS)")
    p.add_argument("--max_connections", type=int, default=256,
                   help="the server's --max_connections: the slow clients take every slot")
    p.add_argument("--flood_mib", type=int, default=100, help="MiB of header per connection")
    p.add_argument("--give_up", type=float, default=60.0)
    args = p.parse_args(argv)
    flood(args.port, args.pid, 4, args.flood_mib << 20)
    slots(args.port, args.max_connections, args.give_up, b"POST /v1/models/quickdraw:pre",
          b"dict HTTP/1.1\r\nX-A: " + b"a" * 4096, "half a request line, then the rest")
    slots(args.port, args.max_connections, args.give_up, PREDICT_HEAD + b"Content-Length: %d\r\n\r\n"
          % len(SQUARE_BODY), SQUARE_BODY, "a complete head, then the body")
    slow_body(args.port, args.give_up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
