"""Templates, job specs, images and launch scripts: valid, and every flag they
pass is one the pipeline, trainer or retrain driver accepts (checked against
the real argument parsers). No Docker engine or cloud is needed."""
from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import QuickDrawOptions

from deploy_helpers import (
    DEPLOY, REPO, check_retrain_args, dockerfile_base_images,
    dockerfile_copy_sources, dry_run, flag_name, module_flags, pipeline_parser,
    substitute, unknown_pipeline_flags, unknown_trainer_flags)

DOCKERFILES = [DEPLOY / "dataflow" / "Dockerfile", DEPLOY / "trainer" / "Dockerfile"]
VERTEX_SPECS = sorted((DEPLOY / "vertex").glob("*.yaml"))
CLOUD_ENV = {"PROJECT": "p", "BUCKET": "gs://b", "REGION": "us-central1"}


def flex_template_main():
    """deploy/dataflow/main.py, a script rather than a package module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "flex_template_main", DEPLOY / "dataflow" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_yaml(path):
    return yaml.safe_load(substitute(path.read_text()))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_copy_only_files_that_exist(dockerfile):
    sources = dockerfile_copy_sources(dockerfile)
    assert sources, "no COPY in %s" % dockerfile
    for source in sources:
        assert (REPO / source).exists(), "%s copies missing %s" % (dockerfile, source)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_pinned_to_a_tag(dockerfile):
    for image in dockerfile_base_images(dockerfile):
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), image


def test_images_match_the_pinned_versions():
    pins = dict(re.findall(r"^([\w-]+)(?:\[\w+\])?==(\S+)$",
                           (REPO / "requirements.txt").read_text(), re.M))
    beam = dockerfile_base_images(DEPLOY / "dataflow" / "Dockerfile")[-1]
    assert beam.endswith(":" + pins["apache-beam"])
    tf_image = dockerfile_base_images(DEPLOY / "trainer" / "Dockerfile")[0]
    assert tf_image.split(":")[1].startswith(pins["tensorflow"])
    compose = yaml.safe_load((DEPLOY / "flink" / "docker-compose.yaml").read_text())
    job_server = compose["services"]["beam-job-server"]["image"]
    assert job_server.endswith(":" + pins["apache-beam"])


def test_flex_template_entry_point_and_metadata():
    dockerfile = (DEPLOY / "dataflow" / "Dockerfile").read_text()
    main = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=\$\{WORKDIR\}/(\S+)", dockerfile)
    assert (REPO / main.group(1)).is_file()
    setup = re.search(r"FLEX_TEMPLATE_PYTHON_SETUP_FILE=\$\{WORKDIR\}/(\S+)", dockerfile)
    assert (REPO / setup.group(1)).is_file()
    from pipeline.run import main as pipeline_main
    assert callable(pipeline_main)

    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    assert metadata["name"] and metadata["parameters"]
    examples = {"input": "gs://b/in/*.ndjson", "output": "gs://b/out",
                "classes": "cat,dog", "recognized_only": "true",
                "raster": "false", "skip_transform": "true"}
    template_argv = flex_template_main().template_argv
    known = pipeline_parser()._option_string_actions
    for parameter in metadata["parameters"]:
        name = parameter["name"]
        assert "--" + name in known, name
        assert parameter["label"] and parameter["helpText"]
        value = examples.get(name, "10")
        for regex in parameter.get("regexes", []):
            assert re.match(regex, value), (name, regex)
        argv = template_argv(["--%s=%s" % (name, value)])
        assert unknown_pipeline_flags(argv) == []
        parsed = PipelineOptions(argv).view_as(QuickDrawOptions)
        if value in ("true", "false"):
            assert getattr(parsed, name) is (value == "true")
    required = {p["name"] for p in metadata["parameters"] if not p["isOptional"]}
    assert required == {"input", "output"}
    with pytest.raises(SystemExit, match="true or false"):
        template_argv(["--raster=yes please"])


@pytest.mark.parametrize("mode", ["run", "direct", "build"])
def test_dataflow_launch_script_passes_known_flags(mode):
    commands = dry_run(DEPLOY / "dataflow" / "launch.sh", mode, env=CLOUD_ENV)
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    declared = {p["name"] for p in metadata["parameters"]}
    for command in commands:
        if command[0] == "gcloud":
            for arg in command:
                if arg.startswith("--parameters="):
                    name, value = arg[len("--parameters="):].split("=", 1)
                    assert name in declared, name
                    assert unknown_pipeline_flags(["--%s=%s" % (name, value)]) == []
                if arg.startswith("--metadata-file=") or arg.startswith("--config="):
                    assert (REPO / arg.split("=", 1)[1]).is_file()
        flags = module_flags(command, "pipeline.run")
        if mode == "direct":
            assert flags, command
        if flags:
            assert unknown_pipeline_flags(flags) == []
            assert "--runner=DataflowRunner" in flags
            assert "--setup_file=./setup.py" in flags
            assert "--input=gs://quickdraw_dataset/full/simplified/*.ndjson" in flags


def test_dataflow_launch_script_explains_missing_settings():
    out = subprocess.run(["bash", str(DEPLOY / "dataflow" / "launch.sh"), "run"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "set PROJECT" in out.stderr


def test_flink_compose_and_run_script():
    compose = yaml.safe_load((DEPLOY / "flink" / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"jobmanager", "taskmanager", "beam-job-server",
            "python-worker-pool"} <= set(services)
    flink_tag = services["jobmanager"]["image"].split(":")[1]
    job_server = services["beam-job-server"]["image"]
    assert "flink%s_job_server" % ".".join(flink_tag.split(".")[:2]) in job_server
    build = services["python-worker-pool"]["build"]
    context = (DEPLOY / "flink" / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).is_file()
    assert services["python-worker-pool"]["network_mode"] == "service:taskmanager"
    assert services["python-worker-pool"]["command"] == ["--worker_pool"]
    dockerfile = (REPO / build["dockerfile"]).read_text()
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "--flink-master=jobmanager:8081" in services["beam-job-server"]["command"]

    commands = dry_run(DEPLOY / "flink" / "run_local.sh",
                       env={"QUICKDRAW_FLINK_DIR": "/tmp/qd-flink"})
    flags = next(module_flags(c, "pipeline.run") for c in commands
                 if module_flags(c, "pipeline.run"))
    assert unknown_pipeline_flags(flags) == []
    assert "--environment_config=localhost:50000" in flags
    assert "--job_endpoint=localhost:8099" in flags
    assert any(c[:2] == ["docker", "compose"] for c in commands)


@pytest.mark.parametrize("spec", VERTEX_SPECS, ids=lambda p: p.stem)
def test_vertex_specs_pass_trainer_flags(spec):
    from trainer.task import build_parser, validate
    job = load_yaml(spec)
    pools = job["workerPoolSpecs"]
    assert pools
    for pool in pools:
        machine = pool["machineSpec"]
        assert machine["machineType"] and pool["replicaCount"] >= 1
        assert machine.get("acceleratorCount", 0) >= 1
        args = pool["containerSpec"]["args"]
        assert unknown_trainer_flags(args) == []
        validate(build_parser().parse_args(args))
    distribution = [a for a in pools[0]["containerSpec"]["args"]
                    if flag_name(a) == "--distribution"]
    expected = {"single_gpu": "one_device", "multi_gpu": "mirrored",
                "multi_worker": "multi_worker"}[spec.stem]
    assert distribution == ["--distribution=" + expected]
    if spec.stem == "multi_gpu":
        assert pools[0]["machineSpec"]["acceleratorCount"] > 1
    if spec.stem == "multi_worker":
        assert sum(p["replicaCount"] for p in pools) > 1


def test_kubernetes_training_job():
    job = load_yaml(DEPLOY / "k8s" / "train-job.yaml")
    assert job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    from trainer.task import build_parser
    assert unknown_trainer_flags(container["args"]) == []
    build_parser().parse_args(container["args"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_kubernetes_retrain_cronjob():
    cron = load_yaml(DEPLOY / "k8s" / "retrain-cronjob.yaml")
    assert cron["kind"] == "CronJob"
    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"] == ["quickdraw-retrain"]
    assert "--step=all" in container["args"]
    check_retrain_args(container["args"])


def test_trainer_image_runs_the_trainer_and_has_the_retrain_command():
    dockerfile = (DEPLOY / "trainer" / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    assert entrypoint == ["python", "-m", "trainer.task"]
    setup = (REPO / "setup.py").read_text()
    assert '"quickdraw-retrain=deploy.retrain:main"' in setup
    out = subprocess.run(["bash", "-n", str(DEPLOY / "airflow" / "setup_venv.sh")])
    assert out.returncode == 0
    for script in [DEPLOY / "dataflow" / "launch.sh", DEPLOY / "flink" / "run_local.sh"]:
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def doc_commands(program: str) -> list[list[str]]:
    """Commands in docs/deploy.md's shell blocks that start with ``program``
    (continuation lines joined)."""
    text = (REPO / "docs" / "deploy.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.startswith(program):
                commands.append(shlex.split(command))
    return commands


def test_commands_in_the_docs_pass_known_flags():
    pipeline_commands = doc_commands("python -m pipeline.run")
    assert len(pipeline_commands) == 2
    for command in pipeline_commands:
        assert unknown_pipeline_flags(module_flags(command, "pipeline.run")) == []
    (retrain_command,) = doc_commands("quickdraw-retrain")
    check_retrain_args(retrain_command[1:])
    (template_run,) = doc_commands("gcloud dataflow flex-template run")
    launched = dry_run(DEPLOY / "dataflow" / "launch.sh", "run", env=CLOUD_ENV)[0]

    def names(command):
        return sorted("=".join(a.split("=")[:2 if a.startswith("--parameters=") else 1])
                      for a in command if a.startswith("--"))
    assert names(template_run) == names(launched)
