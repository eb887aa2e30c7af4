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
and of its largest descendant, the DirectRunner's workers (``VmHWM``), and the
largest sum over all of the run's processes (see ``PeakMemory``).

Scale modes (``--scale``, ``--proportions``, ``--big_class N``, ``--tutorial``): about
1,400,000 drawings (``--drawings``), the baseline and the pipeline on all of
them and the pipeline on half, either every drawing selected or the real
dataset's 11 selected per 145 read per class; and the pipeline on N drawings
per class against the same input with one class file ten times larger; and
the pipeline alone at the tutorial's 10,000 + 1,000 drawings per class.
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from process_tree import PeakMemory  # noqa: E402

REAL_SAMPLE = REPO / "data" / "real_sample"
WORKERS = 2
TINY_PER_CLASS = 10
KEY_ID = re.compile(rb'"key_id":\s*"?(\d+)"?')


# --- Input -------------------------------------------------------------------

def write_input(source: Path, target: Path, per_class: int, big_factor: int = 1) -> int:
    """``per_class`` lines per class file (``big_factor`` times as many in the
    first one), cycling through the real ones and giving each a fresh, unique
    ``key_id``; returns the number of drawings."""
    done = target / ".complete"
    tag = "%d x%d" % (per_class, big_factor)
    if done.is_file() and done.read_text() == tag:
        return sum(1 for p in target.glob("*.ndjson") for _ in open(p, "rb"))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    sources = sorted(source.glob("*.ndjson"))
    if not sources:
        raise SystemExit("bench_pipeline: no *.ndjson in %s" % source)
    for class_number, path in enumerate(sources):
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        with open(target / path.name, "wb") as out:
            for i in range(per_class * (big_factor if class_number == 0 else 1)):
                key_id = b"%d%03d%07d" % (8, class_number, i)
                line, found = KEY_ID.subn(b'"key_id":"' + key_id + b'"',
                                          lines[i % len(lines)], count=1)
                if not found:
                    raise SystemExit("bench_pipeline: no key_id in a line of %s" % path)
                out.write(line + b"\n")
    done.write_text(tag)
    return per_class * (len(sources) - 1 + big_factor)


def split_counts(per_class: int) -> tuple[int, int, int]:
    """80/10/10 % of ``per_class``, summing to it."""
    train, eval_ = per_class * 8 // 10, per_class // 10
    return train, eval_, per_class - train - eval_


# --- Child processes: one configuration each ---------------------------------

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
          "%.0f MiB (largest worker), all processes %.0f MiB PSS (%.0f MiB RSS); load %.1f"
          % (result["seconds"], result["main_cpu_s"], result["workers_cpu_s"],
             result["main_mib"], result["worker_mib"], result["total_pss_mib"],
             result["total_rss_mib"], load), flush=True)
    return result


def child_main(args: argparse.Namespace) -> None:
    with PeakMemory() as peak:
        result = (child_baseline if args.child == "baseline" else child_pipeline)(args)
    result["main_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["worker_mib"] = peak.peak_kib / 1024
    result["total_pss_mib"] = peak.total_pss_kib / 1024
    result["total_rss_mib"] = peak.total_rss_kib / 1024
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


# --- Scale modes ---------------------------------------------------------------

def proportion_counts(per_class: int) -> tuple[int, int, int]:
    """The real dataset's proportions: about 11 drawings selected (10 train,
    1 eval) for every 145 read in a class."""
    selected = max(2, per_class * 11 // 145)
    train = selected * 10 // 11
    return train, selected - train, 0


def _summary(r: dict, drawings: int) -> dict:
    return {"drawings": drawings, "seconds": r["seconds"], "drawings_per_s": drawings / r["seconds"],
            "cpu_s": [r["main_cpu_s"], r["workers_cpu_s"]], "total_pss_mib": r["total_pss_mib"],
            "total_rss_mib": r["total_rss_mib"], "main_mib": r["main_mib"],
            "worker_mib": r["worker_mib"], "load_before": r["load_before"],
            "selected": sum(r["stats"]["totals"]["selected"].values()) if "stats" in r else None}


def scale_runs(source: Path, workdir: Path, drawings: int, classes: int, proportions: bool) -> dict:
    """Baseline and pipeline on the full input, pipeline on half of it: every
    drawing selected, or (``proportions``) the real dataset's 11 of 145."""
    per_class = max(2, round(drawings / classes))
    name = "prop" if proportions else "scale"
    full, half = workdir / ("%s_input" % name), workdir / ("%s_input_half" % name)
    n_full = write_input(source, full, per_class)
    n_half = write_input(source, half, per_class // 2)
    counts = proportion_counts if proportions else split_counts
    base = run_child("baseline", full, workdir / ("%s_out_baseline" % name), counts(per_class))
    out = {"per_class": per_class, "counts": counts(per_class),
           # The loop reads only the drawings it converts (the first lines of each file).
           "baseline": {"seconds": base["seconds"], "drawings_per_s": base["written"] / base["seconds"],
                        "peak_mib": base["main_mib"], "load_before": base["load_before"]}}
    for size, folder, n, pc in (("half", half, n_half, per_class // 2), ("full", full, n_full, per_class)):
        # Proportions: the same selection from half or all of the input.
        r = run_child("pipeline", folder, workdir / ("%s_out_%s" % (name, size)),
                      counts(per_class) if proportions else counts(pc))
        out[size] = _summary(r, n)
    out["ratio_to_baseline"] = base["seconds"] / out["full"]["seconds"]
    out["memory_full_over_half"] = out["full"]["total_pss_mib"] / out["half"]["total_pss_mib"]
    return out


def big_class_runs(source: Path, workdir: Path, per_class: int) -> dict:
    """The pipeline on ``per_class`` drawings per class, and on the same input
    with the first class file ten times as large; the same per-class counts."""
    out = {}
    for label, factor in (("uniform", 1), ("one_class_x10", 10)):
        folder = workdir / ("big_input_x%d" % factor)
        n = write_input(source, folder, per_class, factor)
        r = run_child("pipeline", folder, workdir / ("big_out_x%d" % factor), split_counts(per_class))
        out[label] = _summary(r, n)
    out["time_ratio"] = out["one_class_x10"]["seconds"] / out["uniform"]["seconds"]
    out["input_ratio"] = out["one_class_x10"]["drawings"] / out["uniform"]["drawings"]
    return out


def tutorial_run(source: Path, workdir: Path) -> dict:
    """The tutorial's default dataset size: 10,000 training and 1,000 eval
    drawings of every class, from 11,000 drawings per class (3.8M)."""
    folder = workdir / "tutorial_input"
    n = write_input(source, folder, 11_000)
    return _summary(run_child("pipeline", folder, workdir / "tutorial_out", (10_000, 1_000, 0)), n)


def report_scale(name: str, figures: dict) -> None:
    print("\n%s (per class %d, counts %s):" % (name, figures["per_class"], figures["counts"]))
    b = figures["baseline"]
    print("  baseline: %.1f s, %.0f drawings/s, peak %.0f MiB (load %.1f)"
          % (b["seconds"], b["drawings_per_s"], b["peak_mib"], b["load_before"]))
    for size in ("half", "full"):
        r = figures[size]
        print("  pipeline %s: %d drawings, %.1f s, %.0f drawings/s, all processes %.0f MiB PSS "
              "(%.0f MiB RSS), largest process %.0f MiB (load %.1f)"
              % (size, r["drawings"], r["seconds"], r["drawings_per_s"], r["total_pss_mib"],
                 r["total_rss_mib"], max(r["main_mib"], r["worker_mib"]), r["load_before"]))
    print("  ratio baseline / pipeline: %.2fx; memory full / half: %.2f"
          % (figures["ratio_to_baseline"], figures["memory_full_over_half"]))


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
    parser.add_argument("--source", default=str(REAL_SAMPLE),
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
    parser.add_argument("--scale", action="store_true",
                        help="scale mode: every drawing selected, half and full input, "
                             "memory of all processes (default --drawings 1,400,000)")
    parser.add_argument("--proportions", action="store_true",
                        help="the real dataset's proportions: 11 selected per 145 read per class")
    parser.add_argument("--tutorial", action="store_true",
                        help="the pipeline alone at the tutorial's counts: 10,000 + 1,000 of "
                             "11,000 drawings per class (3.8M), every one selected")
    parser.add_argument("--big_class", type=int, default=0, metavar="PER_CLASS",
                        help="also time PER_CLASS drawings per class against the same input "
                             "with one class file ten times larger")
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
    if args.scale or args.proportions or args.big_class or args.tutorial:
        figures = {"machine": machine(), "revision": revision(), "workers": WORKERS}
        drawings = args.drawings if args.drawings != 344_000 else 1_400_000
        print("%s, revision %s, writing inputs to %s" % (figures["machine"], figures["revision"], workdir),
              flush=True)
        for flag, proportions in (("scale", False), ("proportions", True)):
            if getattr(args, flag):
                figures[flag] = scale_runs(Path(args.source), workdir, drawings, classes, proportions)
                report_scale(flag, figures[flag])
        if args.tutorial:
            figures["tutorial"] = t = tutorial_run(Path(args.source), workdir)
            print("\ntutorial's counts: %d drawings in %.1f s (%.0f/s), all processes %.0f MiB PSS"
                  % (t["drawings"], t["seconds"], t["drawings_per_s"], t["total_pss_mib"]))
        if args.big_class:
            figures["big_class"] = big_class_runs(Path(args.source), workdir, args.big_class)
            b = figures["big_class"]
            print("\nbig class: uniform %.1f s, one class x10 %.1f s: time x%.2f for input x%.2f"
                  % (b["uniform"]["seconds"], b["one_class_x10"]["seconds"], b["time_ratio"],
                     b["input_ratio"]))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return
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
