"""End-to-end benchmark: the Beam pipeline against the tutorial's create_dataset.py.

    python benchmarks/bench_pipeline.py [--drawings 344000] [--workdir DIR]
                                        [--json figures.json]

It writes an input of about ``--drawings`` drawings by repeating the 25 real
drawings of each of the 344 classes of the shared sample with fresh ``key_id``s,
then, each in a child process of its own:

1. the baseline (``baseline_create_dataset.py``), converting every drawing
   (80/10/10 % of each class to train/eval/test), timed after its imports;
2. the pipeline, ``pipeline.run.run([...])`` on the DirectRunner with 2 worker
   processes, the same per-class counts, timed end to end (worker start-up and
   tf.Transform analysis included);
3. the pipeline on half and on all of the input with the same, smaller
   per-class counts, for peak memory, which should not grow with the input.

Peak memory is the largest resident set of the child itself (``getrusage``)
and of its largest descendant, the DirectRunner's workers (``VmHWM``, see
``PeakMemory``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "quickdraw_simplified_sample"
WORKERS = 2
TINY_PER_CLASS = 10
KEY_ID = re.compile(rb'"key_id":\s*"?(\d+)"?')


# --- Input -------------------------------------------------------------------

def write_input(source: Path, target: Path, per_class: int) -> int:
    """``per_class`` lines per class file, cycling through the real ones and
    giving each a fresh, unique ``key_id``; returns the number of drawings."""
    done = target / ".complete"
    if done.is_file() and done.read_text() == str(per_class):
        return per_class * len(list(target.glob("*.ndjson")))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    sources = sorted(source.glob("*.ndjson"))
    if not sources:
        raise SystemExit("bench_pipeline: no *.ndjson in %s" % source)
    for class_number, path in enumerate(sources):
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        with open(target / path.name, "wb") as out:
            for i in range(per_class):
                key_id = b"%d%03d%07d" % (8, class_number, i)
                line, found = KEY_ID.subn(b'"key_id":"' + key_id + b'"',
                                          lines[i % len(lines)], count=1)
                if not found:
                    raise SystemExit("bench_pipeline: no key_id in a line of %s" % path)
                out.write(line + b"\n")
    done.write_text(str(per_class))
    return per_class * len(sources)


def split_counts(per_class: int) -> tuple[int, int, int]:
    """80/10/10 % of ``per_class``, summing to it."""
    train, eval_ = per_class * 8 // 10, per_class // 10
    return train, eval_, per_class - train - eval_


# --- Child processes: one configuration each ---------------------------------

class PeakMemory:
    """Largest VmHWM (peak resident set) seen among this process's
    descendants, sampled in a thread.

    ``getrusage(RUSAGE_CHILDREN)`` is not enough: Linux charges a child that
    forks and execs with the parent's peak before the exec, so a worker (or a
    helper TensorFlow runs at import) started from a 600 MiB process reads as
    600 MiB; it also misses children that are never waited for. VmHWM belongs
    to the process's own address space after exec.
    """

    def __init__(self, interval: float = 0.25):
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(interval,),
                                        daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self, interval: float) -> None:
        me = os.getpid()
        while not self._stop.wait(interval):
            parents = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open("/proc/%s/stat" % entry) as f:
                            parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                    except (OSError, IndexError, ValueError):
                        continue
            for pid in parents:
                ancestor = parents.get(pid)
                while ancestor not in (None, 0, 1, me):
                    ancestor = parents.get(ancestor)
                if ancestor == me:
                    self.peak_kib = max(self.peak_kib, _vm_hwm_kib(pid))


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Timer:
    """Wall-clock seconds and CPU seconds (this process, and its children
    that have exited) of the block it wraps, in ``figures``."""

    def __enter__(self) -> "Timer":
        self._cpu = _cpu_seconds()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self._start
        main, workers = (after - before for after, before in zip(_cpu_seconds(), self._cpu))
        self.figures = {"seconds": seconds, "main_cpu_s": main, "workers_cpu_s": workers}


def _cpu_seconds() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def child_baseline(args: argparse.Namespace) -> dict:
    import tensorflow as tf
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from baseline_create_dataset import create_dataset

    with Timer() as timer:
        written = create_dataset(tf, args.input, args.output, *args.counts)
    return {**timer.figures, "written": written}


def child_pipeline(args: argparse.Namespace) -> dict:
    try:
        from pipeline.run import run
    except ImportError as e:
        raise SystemExit("bench_pipeline: the pipeline is not importable: %s" % e)
    train, eval_, test = args.counts
    argv = ["--input=%s/*.ndjson" % args.input, "--output=%s" % args.output,
            "--train_observations_per_class=%d" % train,
            "--eval_observations_per_class=%d" % eval_,
            "--test_observations_per_class=%d" % test,
            "--direct_num_workers=%d" % WORKERS,
            "--direct_running_mode=multi_processing", "--runner=DirectRunner"]
    argv += args.pipeline_args or []
    with Timer() as timer:
        stats = run(argv)
    return {**timer.figures, "stats": stats}


def run_child(kind: str, input_dir: Path, output_dir: Path,
              counts: tuple[int, int, int], pipeline_args: tuple[str, ...] = ()) -> dict:
    """Runs one configuration in a fresh process; returns its figures."""
    shutil.rmtree(output_dir, ignore_errors=True)
    load = os.getloadavg()[0]
    command = [sys.executable, __file__, "--child", kind, "--input", str(input_dir),
               "--output", str(output_dir), "--counts", *map(str, counts)]
    if pipeline_args:
        command.append("--pipeline_args=" + " ".join(pipeline_args))
    print("  %s: %s, %s/%s/%s per class %s..." % (kind, input_dir.name, *counts,
                                                 " ".join(pipeline_args) + " " if pipeline_args else ""),
          flush=True)
    log = output_dir.parent / (output_dir.name + ".log")
    with open(log, "w") as stderr:
        done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=stderr, text=True)
    if done.returncode != 0:
        raise SystemExit("bench_pipeline: the %s run failed (exit %d), see %s"
                         % (kind, done.returncode, log))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_before"] = load  # other work on the machine skews the times
    print("    %.1f s, CPU %.0f s (main) + %.0f s (workers), peak RSS %.0f MiB (main), "
          "%.0f MiB (largest worker)"
          % (result["seconds"], result["main_cpu_s"], result["workers_cpu_s"],
             result["main_mib"], result["worker_mib"]), flush=True)
    return result


def child_main(args: argparse.Namespace) -> None:
    with PeakMemory() as peak:
        result = (child_baseline if args.child == "baseline" else child_pipeline)(args)
    result["main_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["worker_mib"] = peak.peak_kib / 1024
    result["children_rusage_mib"] = \
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result, default=str))


def time_stages(source: Path, workdir: Path, figures: dict) -> dict:
    """Splits the pipeline's time into a fixed part (a run on a tiny input),
    the tf.Transform analysis (a run with ``--skip_transform``) and the rest,
    which grows with the number of drawings."""
    tiny = workdir / "input_tiny"
    write_input(source, tiny, TINY_PER_CLASS)
    fixed = run_child("pipeline", tiny, workdir / "out_tiny", split_counts(TINY_PER_CLASS))
    fixed_no_tft = run_child("pipeline", tiny, workdir / "out_tiny_no_tft",
                             split_counts(TINY_PER_CLASS), ("--skip_transform",))
    no_tft = run_child("pipeline", workdir / "input", workdir / "out_no_tft",
                       figures["counts"], ("--skip_transform",))
    total = figures["pipeline_s"]
    per_drawing_s = no_tft["seconds"] - fixed_no_tft["seconds"]
    return {
        "fixed_s": fixed["seconds"],
        "fixed_without_transform_s": fixed_no_tft["seconds"],
        "without_transform_s": no_tft["seconds"],
        "transform_s": total - no_tft["seconds"],
        "per_drawing_work_s": per_drawing_s,
        "per_drawing_core_us": per_drawing_s * WORKERS / figures["drawings"] * 1e6,
        "baseline_per_drawing_us": figures["baseline_s"] / figures["drawings"] * 1e6,
    }


# --- Report ------------------------------------------------------------------

def revision() -> str:
    """The commit measured, with ``+local changes`` when the tree differs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "pipeline",
                "benchmarks", "tfrecord_schema.py")
    return commit + (" +local changes" if dirty else "")


def machine() -> str:
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 2 ** 20
    return "%d cores, %.0f GiB, %s" % (os.cpu_count(), mem_gib, sys.platform)


def report(figures: dict) -> None:
    rows = [
        ("drawings", "%d (%d classes x %d)" % (figures["drawings"], figures["classes"],
                                               figures["per_class"])),
        ("baseline (create_dataset.py, 1 process)", "%.1f s, CPU %.1f s"
         % (figures["baseline_s"], figures["baseline_cpu_s"])),
    ]
    if "pipeline_s" in figures:
        rows += [
            ("pipeline (DirectRunner, %d workers)" % WORKERS,
             "%.1f s, CPU %.1f s (main) + %.1f s (workers)"
             % (figures["pipeline_s"], *figures["pipeline_cpu_s"])),
            ("speed-up (baseline / pipeline)", "%.2fx" % figures["speedup"]),
            ("pipeline drawings/s per core", "%.0f" % figures["drawings_per_s_per_core"]),
        ]
    for size in ("half", "full"):
        if size in figures.get("memory", {}):
            m = figures["memory"][size]
            rows.append(("peak RSS, %s input (%d drawings)" % (size, m["drawings"]),
                         "%.0f MiB main, %.0f MiB worker" % (m["main_mib"], m["worker_mib"])))
    if "growth" in figures.get("memory", {}):
        rows.append(("peak RSS full / half (main, worker)", "%.2f, %.2f"
                     % tuple(figures["memory"]["growth"])))
    if "stages" in figures:
        st = figures["stages"]
        rows += [
            ("stage: fixed cost (tiny input, with tf.Transform)", "%.1f s" % st["fixed_s"]),
            ("stage: fixed cost without tf.Transform", "%.1f s" % st["fixed_without_transform_s"]),
            ("stage: tf.Transform analysis (full - skip_transform)", "%.1f s" % st["transform_s"]),
            ("stage: per-drawing work without tf.Transform",
             "%.1f s, %.0f us per drawing per core (baseline %.0f us)"
             % (st["per_drawing_work_s"], st["per_drawing_core_us"],
                st["baseline_per_drawing_us"])),
        ]
    width = max(len(name) for name, _ in rows)
    print("\n%s, revision %s; 1-minute load average before each run: %s\n" % (
        figures["machine"], figures["revision"], ", ".join("%s %.1f" % kv for kv in figures["load_before"].items())))
    for name, value in rows:
        print("%-*s  %s" % (width, name, value))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drawings", type=int, default=344_000)
    parser.add_argument("--workdir", default=None,
                        help="where inputs and outputs go (default: a temporary "
                             "directory, removed afterwards)")
    parser.add_argument("--source", default=str(SHARED_SAMPLE),
                        help="directory of real per-class *.ndjson files")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--baseline_only", action="store_true")
    parser.add_argument("--skip_memory", action="store_true",
                        help="skip the half/full peak-memory runs")
    parser.add_argument("--child", choices=("baseline", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--counts", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--pipeline_args", type=str.split, help=argparse.SUPPRESS)
    parser.add_argument("--stages", action="store_true",
                        help="also time where the pipeline's time goes: its fixed cost "
                             "(%d drawings per class) and its run without tf.Transform"
                             % TINY_PER_CLASS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_pipeline_"))
    classes = len(list(Path(args.source).glob("*.ndjson")))
    if not classes:
        raise SystemExit("bench_pipeline: no *.ndjson in %s" % args.source)
    per_class = max(2, round(args.drawings / classes))
    print("writing the input to %s ..." % workdir, flush=True)
    full = workdir / "input"
    half = workdir / "input_half"
    drawings = write_input(Path(args.source), full, per_class)
    figures = {"machine": machine(), "revision": revision(), "drawings": drawings, "classes": classes,
               "per_class": per_class, "counts": split_counts(per_class)}

    baseline = run_child("baseline", full, workdir / "out_baseline", figures["counts"])
    figures["baseline_s"] = baseline["seconds"]
    figures["baseline_peak_mib"] = baseline["main_mib"]
    figures["baseline_cpu_s"] = baseline["main_cpu_s"]
    figures["load_before"] = {"baseline": baseline["load_before"]}
    if not args.baseline_only:
        pipeline = run_child("pipeline", full, workdir / "out_pipeline", figures["counts"])
        figures["pipeline_s"] = pipeline["seconds"]
        figures["pipeline_totals"] = pipeline["stats"].get("totals")
        figures["pipeline_cpu_s"] = [pipeline["main_cpu_s"], pipeline["workers_cpu_s"]]
        figures["load_before"]["pipeline"] = pipeline["load_before"]
        figures["speedup"] = baseline["seconds"] / pipeline["seconds"]
        figures["drawings_per_s_per_core"] = drawings / pipeline["seconds"] / WORKERS
        if not args.skip_memory:
            half_drawings = write_input(Path(args.source), half, per_class // 2)
            counts = split_counts(per_class // 2)
            memory = {}
            for size, input_dir, n in (("half", half, half_drawings),
                                       ("full", full, drawings)):
                r = run_child("pipeline", input_dir, workdir / ("out_mem_" + size), counts)
                memory[size] = {"drawings": n, "counts": counts, "seconds": r["seconds"],
                                "main_mib": r["main_mib"], "worker_mib": r["worker_mib"]}
            memory["growth"] = [memory["full"][k] / memory["half"][k]
                                for k in ("main_mib", "worker_mib")]
            figures["memory"] = memory

    if args.stages and not args.baseline_only:
        figures["stages"] = time_stages(Path(args.source), workdir, figures)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
