"""Weekly retraining of the Quick, Draw! classifier on Cloud Composer.

    choose_version >> build_dataset >> train >> evaluate >> gate >> promote

``choose_version`` names the version after the run's logical date, so a
cleared or retried task works on the same version (each retrain step then
finishes what a killed attempt left, or reports it done). ``build_dataset``
runs the pipeline's Flex Template on Dataflow into
``<registry>/datasets/<version>``; ``train``, ``evaluate`` and ``promote``
run the retrain driver's steps (``quickdraw-retrain --step=...``) as Vertex
AI custom jobs from the trainer image, so Composer itself needs only the
Google provider, not the project. ``gate`` reads the evaluation's verdict
from ``<registry>/models/<version>/eval_report.json``: a refused candidate
skips ``promote`` (a normal outcome, not a failure to alert on), with the
reason in that report.

Configure with environment variables of the Composer environment (names
below); see docs/deploy.md for building the image and the template.
"""
from __future__ import annotations

import datetime
import json
import os

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
from airflow.providers.google.cloud.operators.dataflow import (
    DataflowStartFlexTemplateOperator)
from airflow.providers.google.cloud.operators.vertex_ai.custom_job import (
    CreateCustomJobOperator)

PROJECT = os.environ.get("QUICKDRAW_PROJECT", "your-project")
REGION = os.environ.get("QUICKDRAW_REGION", "us-central1")
BUCKET = os.environ.get("QUICKDRAW_BUCKET", "gs://your-bucket")
REGISTRY = os.environ.get("QUICKDRAW_REGISTRY", BUCKET + "/quickdraw/registry")
TEMPLATE = os.environ.get("QUICKDRAW_TEMPLATE",
                          BUCKET + "/quickdraw/templates/pipeline.json")
TRAINER_IMAGE = os.environ.get(
    "QUICKDRAW_TRAINER_IMAGE",
    "%s-docker.pkg.dev/%s/quickdraw/trainer:latest" % (REGION, PROJECT))
INPUT = os.environ.get("QUICKDRAW_INPUT",
                       "gs://quickdraw_dataset/full/simplified/*.ndjson")

# The version id chosen by the first task, passed to every later task.
VERSION = "{{ ti.xcom_pull(task_ids='choose_version') }}"
VERSION_FORMAT = "%Y%m%d-%H%M%S"   # the retrain driver's dated ids

PIPELINE_PARAMETERS = {
    "input": INPUT,
    "output": REGISTRY + "/datasets/" + VERSION,
    "train_observations_per_class": "10000",
    "eval_observations_per_class": "1000",
    "test_observations_per_class": "1000",
    "output_shards": "32",
}
DATAFLOW_ENVIRONMENT = {
    "maxWorkers": 32,
    "machineType": "n2-standard-4",
    "tempLocation": BUCKET + "/quickdraw/tmp",
}
TRAINER_FLAGS = ("--steps=100000 --batch_size=8 --num_layers=3 "
                 "--num_nodes=128 --learning_rate=0.0001")
PROMOTION_MARGIN = "0.02"
MIN_ACCURACY = os.environ.get("QUICKDRAW_MIN_ACCURACY", "0.5")

GPU_MACHINE = {"machine_type": "n1-standard-8",
               "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1}
CPU_MACHINE = {"machine_type": "n1-standard-4"}


def retrain_args(step: str) -> list[str]:
    """The retrain driver's flags for one step of this run."""
    return ["--registry=" + REGISTRY, "--step=" + step, "--version=" + VERSION,
            "--trainer_flags=" + TRAINER_FLAGS,
            "--promotion_margin=" + PROMOTION_MARGIN,
            "--min_accuracy=" + MIN_ACCURACY]


def version_id(logical_date: datetime.datetime) -> str:
    """The version of the run with this logical date (UTC)."""
    return logical_date.astimezone(datetime.timezone.utc).strftime(
        VERSION_FORMAT)


def eval_report_object(version: str) -> tuple[str, str]:
    """Bucket and object name of a version's eval report in the registry."""
    bucket, _, prefix = REGISTRY[len("gs://"):].partition("/")
    parts = [p for p in prefix.split("/") if p]
    return bucket, "/".join(parts + ["models", version, "eval_report.json"])


def gate_passed(report: dict) -> bool:
    """The evaluation's verdict; a report without one (evaluation refused
    the candidate's dataset) is a refusal."""
    return bool((report.get("gate") or {}).get("promoted"))


def retrain_job(step: str, machine_spec: dict) -> dict:
    """A Vertex AI CustomJob running one retrain step in the trainer image."""
    return {
        "display_name": "quickdraw-%s-%s" % (step, VERSION),
        "job_spec": {"worker_pool_specs": [{
            "machine_spec": machine_spec,
            "replica_count": 1,
            "container_spec": {"image_uri": TRAINER_IMAGE,
                               "command": ["quickdraw-retrain"],
                               "args": retrain_args(step)},
        }]},
    }


with DAG(
    dag_id="quickdraw_retrain",
    description="Quick, Draw! dataset on Dataflow, training on Vertex AI, "
                "promotion gate",
    schedule="@weekly",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["quickdraw"],
) as dag:

    @task
    def choose_version(logical_date=None, dag_run=None) -> str:
        """The version id from the run's logical date (Airflow 3 gives a
        manually triggered run none: then the time it was queued for)."""
        return version_id(logical_date or dag_run.run_after)

    build_dataset = DataflowStartFlexTemplateOperator(
        task_id="build_dataset",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body={"launchParameter": {
            "jobName": "quickdraw-" + VERSION,
            "containerSpecGcsPath": TEMPLATE,
            "parameters": PIPELINE_PARAMETERS,
            "environment": DATAFLOW_ENVIRONMENT,
        }},
    )
    train = CreateCustomJobOperator(
        task_id="train", project_id=PROJECT, region=REGION,
        custom_job=retrain_job("train", GPU_MACHINE))
    evaluate = CreateCustomJobOperator(
        task_id="evaluate", project_id=PROJECT, region=REGION,
        custom_job=retrain_job("evaluate", GPU_MACHINE))
    promote = CreateCustomJobOperator(
        task_id="promote", project_id=PROJECT, region=REGION,
        custom_job=retrain_job("promote", CPU_MACHINE))

    @task.short_circuit
    def gate(version: str) -> bool:
        """False (skipping promote) if the evaluation refused the candidate."""
        from airflow.providers.google.cloud.hooks.gcs import GCSHook
        bucket, name = eval_report_object(version)
        return gate_passed(json.loads(GCSHook().download(
            bucket_name=bucket, object_name=name)))

    version = choose_version()
    version >> build_dataset >> train >> evaluate >> gate(version) >> promote
