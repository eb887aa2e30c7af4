"""``python -m trainer.predict`` attacked: piped into a reader that stops
early (``| head -1``), it ends quietly, without a traceback; given a FIFO or a
link to ``/dev/zero`` as input, it refuses in one line at once."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_lines import record

ROOT = Path(__file__).resolve().parent.parent
# The command with a stand-in model, so that no TensorFlow is loaded.
SCRIPT = """
import sys
import numpy as np
from trainer import predict

class Fixed:
    classes = ["cat", "dog"]
    def __init__(self, export_dir):
        pass
    def probabilities(self, drawings):
        return np.full((len(drawings), 2), 0.5, np.float32)

predict.Predictor = Fixed
sys.exit(predict.main(sys.argv[1:]))
"""


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    path = tmp_path / "many.ndjson"
    path.write_bytes(b"\n".join(record(key_id=str(i)) for i in range(20_000)) + b"\n")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "--model=unused", "--input=%s" % path],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith(b'{"line": 1') and err == "", err


def refuse_to_grow():
    """In the child: an address-space cap, so a reader that never ends fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize("make, kind", [
    (os.mkfifo, "a FIFO"),                                    # open() would block
    (lambda p: os.symlink("/dev/zero", p), "a character device"),  # a line without end
])
def test_an_input_that_would_block_or_never_end_is_refused_at_once(tmp_path, make, kind):
    path = tmp_path / "drawings.ndjson"
    make(str(path))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "--model=unused", "--input=%s" % path],
                          cwd=ROOT, capture_output=True, timeout=60, preexec_fn=refuse_to_grow,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr[-2000:]
    assert proc.stderr.decode() == "error: %s is %s, not a regular file\n" % (
        path, kind)
