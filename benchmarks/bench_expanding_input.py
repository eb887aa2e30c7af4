"""Peak memory and time of ``python -m pipeline.run`` on a tiny gzip file that
expands to millions of bad lines.

The input is the bundled sample (``data/sample``, 500 drawings) plus
``junk.ndjson.gz``: ``--blank`` blank lines, ``--bad`` lines that are not
JSON and ``--copies`` copies of one valid drawing, gzipped to a few tens of
KB (MB with copies). The run uses 2 worker processes; the figure is the
largest sum of the resident memory of the launcher and its workers, sampled
from /proc every 0.1 s, with the run's wall and CPU time.

    python benchmarks/bench_expanding_input.py
    python benchmarks/bench_expanding_input.py --blank 1000000 --bad 200000 --timeout 600
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from process_tree import descendants, resident_bytes  # noqa: E402


def write_input(folder: Path, blank: int, bad: int, copies: int) -> Path:
    """The sample's class files and the expanding junk file."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "data" / "sample").glob("*.ndjson")):
        shutil.copy(path, folder / path.name)
    junk = folder / "junk.ndjson.gz"
    with gzip.open(junk, "wb", compresslevel=9) as f:
        for _ in range(blank // 100_000):
            f.write(b"\n" * 100_000)
        f.write(b"\n" * (blank % 100_000))
        f.write(b"not json\n" * bad)
        drawing = (ROOT / "data" / "sample" / "cat.ndjson").read_bytes().splitlines()[0] + b"\n"
        for _ in range(copies // 10_000):
            f.write(drawing * 10_000)
        f.write(drawing * (copies % 10_000))
    return junk


def measure(args: list[str], timeout: float) -> dict:
    """Runs the pipeline command; its peak tree memory, wall time and exit status."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.run"] + args, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak, status, usage = 0, None, None
    while status is None and time.monotonic() - start < timeout:
        peak = max(peak, resident_bytes({proc.pid} | descendants(proc.pid)))
        pid, code, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, usage = code, rusage
        time.sleep(0.1)
    timed_out = status is None
    if timed_out:
        proc.kill()
        _, status, usage = os.wait4(proc.pid, 0)
    reader.join()
    # CPU time of the launcher and the workers it waited for: less sensitive
    # than the wall time to what else the machine runs.
    return {"peak_mib": round(peak / 2 ** 20), "seconds": round(time.monotonic() - start, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
            "load_average": os.getloadavg(), "tail": b"".join(output).decode("utf-8", "replace")[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blank", type=int, default=5_000_000)
    parser.add_argument("--bad", type=int, default=1_000_000)
    parser.add_argument("--copies", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_expanding_"))
    junk = write_input(work / "in", args.blank, args.bad, args.copies)
    print("%s: %d bytes, %d blank and %d bad lines, %d copies of a drawing" % (
        junk.name, junk.stat().st_size, args.blank, args.bad, args.copies))
    result = measure(["--input=%s" % (work / "in"), "--output=%s" % (work / "out"),
                      "--train_observations_per_class=20", "--eval_observations_per_class=5",
                      "--output_shards=2", "--skip_transform", "--direct_num_workers=2",
                      "--direct_running_mode=multi_processing"], args.timeout)
    rejects = work / "out"
    result["rejects_bytes"] = sum(p.stat().st_size for p in rejects.glob("rejects-*")) if rejects.is_dir() else 0
    print(json.dumps(result, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
