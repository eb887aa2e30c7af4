"""Every command answers a user error in one line with exit status 2, and a
native crash's last line always reaches the user, whatever is filtered."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

import command_line
from sample_paths import BUNDLED_SAMPLE, REPO

# (module run with -m, console script, a misspelled flag, the flag it meant, other flags it needs)
COMMANDS = [
    ("pipeline.run", "quickdraw-pipeline", "--outptu=x", "--output", []),
    ("pipeline.render", "quickdraw-render", "--inptu=x", "--input", []),
    ("trainer.task", "quickdraw-train", "--modle_dir=x", "--model_dir", []),
    ("trainer.predict", "quickdraw-predict", "--modle=x", "--model", []),
    ("serving.server", "quickdraw-serve", "--modle=x", "--model", []),
    ("deploy.retrain", "quickdraw-retrain", "--registyr=x", "--registry", []),
    ("serving.examples", None, "--clas=cat", "--class", ["--examples=x"]),
]
MODULES = [c[0] for c in COMMANDS]


def run_module(module: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def run_script(script: str, *argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``python -c script`` with the repository importable, stdin closed."""
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), **env),
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_one_line_cuts_long_values_and_joins_lines():
    text = command_line.one_line("--classes=" + "x" * 10_000 + "\nsecond line")
    assert "\n" not in text and len(text) <= command_line.MAX_MESSAGE
    assert text.endswith("(cut here)")


def test_option_names_are_read_as_argparse_reads_them():
    known = ["--a", "--flags", "--pipeline_flags"]
    args = ["--a=1", "--b", "2", "-c", "--flags=--x --y", "--pipeline_flags", "--seed=1 --z",
            "--e=1 2", "--", "--d"]
    assert command_line.unknown_options(args, known) == ["--b"]


def test_a_misspelled_flag_is_named_before_a_missing_required_one(capsys):
    parser = command_line.Parser("quickdraw-x", "x")
    parser.add_argument("--model_dir", required=True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--modle_dir=m"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: unknown option --modle_dir; did you mean --model_dir? (see --help)"]


@pytest.mark.parametrize("module,script,typo,meant,extra", COMMANDS, ids=MODULES)
def test_a_misspelled_flag_is_one_line_naming_it_and_exit_2(module, script, typo, meant, extra):
    done = run_module(module, typo, *extra)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and typo.split("=")[0] in lines[0] and meant in lines[0]


@pytest.mark.parametrize("module,script,typo,meant,extra", [c for c in COMMANDS if c[1]],
                         ids=[c[0] for c in COMMANDS if c[1]])
def test_help_names_the_command_as_typed_and_loads_no_tensorflow(module, script, typo, meant, extra):
    probe = ("import runpy, sys\nsys.argv = [%r, '--help']\n"
             "try:\n    runpy.run_module(%r, run_name='__main__')\nexcept SystemExit as e:\n"
             "    assert e.code in (0, None), e.code\n"
             "print('TENSORFLOW LOADED' if 'tensorflow' in sys.modules else 'NO TENSORFLOW')\n"
             % (script, module))
    done = run_script(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: %s " % script), done.stdout[:200]
    if module != "pipeline.run":  # the pipeline's help is Beam's parser, which loads Beam
        assert done.stdout.rstrip().endswith("NO TENSORFLOW")
    assert "(default: " in done.stdout


def test_help_under_python_m_names_the_module():
    done = run_module("trainer.task", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m trainer.task ")


def test_serve_on_a_port_in_use_is_one_line_before_it_says_where_it_serves(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_module("serving.server", "--model=%s" % tmp_path, "--port=%d" % port)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: cannot listen on 127.0.0.1:%d: Address already in use" % port]


def test_train_with_a_file_as_model_dir_is_one_line(tmp_path):
    model_dir = tmp_path / "a_file"
    model_dir.write_text("not a folder")
    done = run_module("trainer.task", "--training_data=x", "--eval_data=y", "--classes_file=z",
                      "--model_dir=%s" % model_dir)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: --model_dir=%s is a file, not a folder" % model_dir]


# A native crash as TensorFlow dies: a fatal line written by C code straight to
# the stderr descriptor, then abort(). ctypes.PyDLL holds the GIL through both
# calls, so no Python thread of the dying process can run in between.
CRASH = r"""
import ctypes, runpy, sys
import native_logs

NOISE = b"I0000 00:00:1796516182.769158    8574 port.cc:153] oneDNN custom operations are on.\n"
FATAL = b"F0000 00:00:1796516182.769158    8574 injected.cc:7] Check failed: injected crash\n"
entered = native_logs.NativeStderrFilter.__enter__

def enter_then_crash(self):
    entered(self)
    libc = ctypes.PyDLL(None)
    libc.write(2, NOISE + FATAL, len(NOISE + FATAL))
    libc.abort()

native_logs.NativeStderrFilter.__enter__ = enter_then_crash
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__")
"""

CRASH_ARGS = {
    "pipeline.run": ["--output=OUT"],
    "pipeline.render": ["--input=%s" % BUNDLED_SAMPLE, "--output=OUT/m.png"],
    "trainer.task": ["--training_data=x", "--eval_data=y", "--classes_file=z", "--model_dir=OUT"],
    "trainer.predict": ["--model=OUT", "--input=-"],
    "serving.server": ["--model=OUT", "--port=0"],
    "deploy.retrain": ["--registry=OUT"],
    "serving.examples": ["--examples=OUT", "--class=cat"],
}


@pytest.mark.parametrize("module", MODULES)
def test_a_native_crash_shows_its_fatal_line_and_the_noise_stays_filtered(module, tmp_path):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in CRASH_ARGS[module]]
    done = run_script(CRASH, module, *argv)
    assert done.returncode == -signal.SIGABRT, (done.returncode, done.stderr)
    assert "Check failed: injected crash" in done.stderr
    assert "oneDNN" not in done.stderr


@pytest.mark.slow
def test_a_crash_once_tensorflow_is_loaded_reaches_the_user(tmp_path):
    """The same crash in the trainer's command after TensorFlow has loaded and
    written its own start-up lines (absl's logging is up by then)."""
    script = ("import ctypes, sys\nimport trainer.task\n"
              "def crash(argv=None):\n"
              "    import tensorflow as tf\n"
              "    tf.constant(1.0) + 1.0\n"
              "    fatal = b'F0000 00:00:1.0 1 injected.cc:7] Check failed: after TensorFlow\\n'\n"
              "    libc = ctypes.PyDLL(None)\n"
              "    libc.write(2, fatal, len(fatal))\n"
              "    libc.abort()\n"
              "trainer.task.main = crash\n"
              "trainer.task.run()\n")
    done = run_script(script)
    assert done.returncode == -signal.SIGABRT, (done.returncode, done.stderr)
    assert done.stderr.splitlines()[-1].endswith("Check failed: after TensorFlow"), done.stderr
    assert "oneDNN" not in done.stderr and "cudart_stub" not in done.stderr


def test_tf_cpp_min_log_level_0_shows_every_native_line():
    script = ("import os, sys, native_logs\n"
              "with native_logs.NativeStderrFilter(native_logs.NATIVE_INFO_NOISE):\n"
              "    os.write(2, b'I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\\n')\n")
    for level, shown in (("2", False), ("0", True)):
        done = run_script(script, TF_CPP_MIN_LOG_LEVEL=level)
        assert done.returncode == 0
        assert ("oneDNN" in done.stderr) == shown, (level, done.stderr)


def test_the_filter_outlives_a_process_killed_while_its_workers_write(tmp_path):
    """A local worker (a child holding the filtered descriptor) still gets its
    lines through after the launcher is killed with SIGKILL."""
    script = ("import os, subprocess, sys, time, native_logs\n"
              "with native_logs.NativeStderrFilter():\n"
              "    subprocess.Popen([sys.executable, '-c', 'import os, time; time.sleep(1); "
              "os.write(2, b\"worker: last words\\\\n\")'])\n"
              "    os.kill(os.getpid(), 9)\n")
    done = run_script(script)
    assert done.returncode == -signal.SIGKILL
    assert "worker: last words" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module,argv", [
    ("trainer.predict", ["--model=MISSING", "--input=-"]),
    ("serving.server", ["--model=MISSING", "--port=0"]),
    ("trainer.task", ["--training_data=MISSING/t-*", "--eval_data=MISSING/e-*",
                      "--classes_file=MISSING/c", "--model_dir=OUT"]),
], ids=["predict", "serve", "train"])
def test_missing_model_or_data_is_one_line_once_tensorflow_is_loaded(module, argv, tmp_path):
    argv = [a.replace("MISSING", str(tmp_path / "missing")).replace("OUT", str(tmp_path / "m"))
            for a in argv]
    done = run_module(module, *argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0], done.stderr


@pytest.mark.parametrize("value", ["nan", "-0.1", "1.5", "inf"])
def test_predict_threshold_outside_0_1_is_one_line(value, tmp_path):
    done = run_module("trainer.predict", "--model=%s" % tmp_path, "--threshold=%s" % value)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: --threshold=%s must be in [0, 1]" % float(value)]


@pytest.mark.slow
def test_retrain_shows_its_steps_not_the_libraries_noise(tmp_path):
    """quickdraw-retrain runs the pipeline and the trainer in its process: its
    stderr holds its own lines and the pipeline's log, no TensorFlow, absl or
    tf.Transform noise."""
    done = run_module("deploy.retrain", "--registry=%s" % (tmp_path / "registry"),
                      "--pipeline_flags=--classes=cat,fish --train_observations_per_class=10 "
                      "--eval_observations_per_class=5 --output_shards=1 --skip_transform",
                      "--trainer_flags=--steps=5 --batch_size=8 --num_layers=1 --num_nodes=8 "
                      "--eval_every_steps=0", "--min_accuracy=0", timeout=600)
    assert done.returncode == 0, done.stderr
    for line in done.stderr.splitlines():
        assert line.startswith("retrain ") or " INFO " in line[:20], done.stderr
