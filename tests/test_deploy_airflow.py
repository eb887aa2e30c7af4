"""The retraining DAG: its tasks, their order, and the flags they pass.

Airflow (with the Google provider, some 200 packages and their pins) is kept
out of the project's environment. ``test_dag_structure`` and ``test_dag_flags`` read the
DAG file without importing Airflow (its syntax tree, and its configuration
part executed alone). ``test_dag_loads_and_runs_in_order_in_airflow`` loads it
with real Airflow from a separate virtualenv (deploy/airflow/setup_venv.sh;
its Python in QUICKDRAW_AIRFLOW_PYTHON, or at the script's default place).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest

from deploy_helpers import (
    DEPLOY, check_retrain_args, unknown_pipeline_flags)

DAG_FILE = DEPLOY / "airflow" / "quickdraw_retrain_dag.py"
ORDER = ["choose_version", "build_dataset", "train", "evaluate", "gate",
         "promote"]
OPERATORS = {"build_dataset": "DataflowStartFlexTemplateOperator",
             "train": "CreateCustomJobOperator",
             "evaluate": "CreateCustomJobOperator",
             "promote": "CreateCustomJobOperator"}
VERSION = "20260105-030000"


def _chain(node: ast.AST) -> list[ast.AST]:
    """The operands of ``a >> b >> c``, left to right."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
        return _chain(node.left) + _chain(node.right)
    return [node]


def _dag_tree() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def test_dag_structure():
    tree = _dag_tree()
    operators, tasks = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Name):
            kwargs = {k.arg: k.value for k in node.value.keywords}
            if "task_id" in kwargs:
                task_id = ast.literal_eval(kwargs["task_id"])
                operators[task_id] = node.value.func.id
                tasks[node.targets[0].id] = task_id
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Name) and d.id == "task":
                    operators[node.name] = "task"
                elif isinstance(d, ast.Attribute) and \
                        isinstance(d.value, ast.Name) and d.value.id == "task":
                    operators[node.name] = "task." + d.attr
    for node in ast.walk(tree):  # version = choose_version()
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Name) \
                and node.value.func.id in operators:
            tasks[node.targets[0].id] = node.value.func.id
    assert {k: v for k, v in operators.items()
            if not v.startswith("task")} == OPERATORS
    assert operators["choose_version"] == "task"
    assert operators["gate"] == "task.short_circuit", \
        "a refused candidate skips promote instead of failing it"

    chains = [_chain(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)
              and isinstance(n.value, ast.BinOp)]
    assert len(chains) == 1, "one dependency chain"
    order = []
    for operand in chains[0]:
        if isinstance(operand, ast.Call):
            order.append(operand.func.id)
        else:
            order.append(tasks[operand.id])
    assert order == ORDER

    dag_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Name) and n.func.id == "DAG")
    kwargs = {k.arg: k.value for k in dag_call.keywords}
    assert ast.literal_eval(kwargs["dag_id"]) == "quickdraw_retrain"
    assert ast.literal_eval(kwargs["schedule"]) == "@weekly"
    assert ast.literal_eval(kwargs["max_active_runs"]) == 1
    assert ast.literal_eval(kwargs["catchup"]) is False


def _dag_config() -> dict:
    """The DAG file's constants and helper functions, executed without the
    Airflow imports and the ``with DAG`` block."""
    tree = _dag_tree()
    tree.body = [n for n in tree.body
                 if not isinstance(n, (ast.Try, ast.ImportFrom, ast.With))
                 or (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    namespace: dict = {}
    exec(compile(tree, str(DAG_FILE), "exec"), namespace)
    return namespace


def test_version_comes_from_the_logical_date_and_the_gate_reads_the_report():
    config = _dag_config()
    import datetime
    from deploy.registry import check_version_id
    when = datetime.datetime(2026, 1, 5, 4, 0, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))
    assert config["version_id"](when) == VERSION
    assert check_version_id(config["version_id"](when)) == VERSION
    config["REGISTRY"] = "gs://b/quickdraw/registry"
    assert config["eval_report_object"](VERSION) == (
        "b", "quickdraw/registry/models/%s/eval_report.json" % VERSION)
    config["REGISTRY"] = "gs://b"
    assert config["eval_report_object"](VERSION) == (
        "b", "models/%s/eval_report.json" % VERSION)
    assert config["gate_passed"]({"gate": {"promoted": True}}) is True
    assert config["gate_passed"]({"gate": {"promoted": False}}) is False
    assert config["gate_passed"]({"version": VERSION}) is False


def test_dag_flags():
    config = _dag_config()
    params = config["PIPELINE_PARAMETERS"]
    flags = ["--%s=%s" % (k, v.replace(config["VERSION"], VERSION))
             for k, v in params.items()]
    assert unknown_pipeline_flags(flags) == []
    assert params["output"].startswith(config["REGISTRY"] + "/datasets/")
    for step in ("train", "evaluate", "promote"):
        job = config["retrain_job"](step, config["CPU_MACHINE"])
        (pool,) = job["job_spec"]["worker_pool_specs"]
        container = pool["container_spec"]
        assert container["command"] == ["quickdraw-retrain"]
        args = [a.replace(config["VERSION"], VERSION) for a in container["args"]]
        assert "--step=%s" % step in args and "--version=%s" % VERSION in args
        check_retrain_args(args)


def _airflow_python() -> str | None:
    """QUICKDRAW_AIRFLOW_PYTHON, else the virtualenv scripts/test.sh makes
    (.venv-airflow), else setup_venv.sh's default place."""
    for python in (os.environ.get("QUICKDRAW_AIRFLOW_PYTHON"),
                   str(DEPLOY.parent / ".venv-airflow" / "bin" / "python"),
                   os.path.expanduser("~/.cache/quickdraw/airflow-venv/bin/python")):
        if python and Path(python).is_file():
            return python
    return None


@pytest.mark.slow
@pytest.mark.skipif(_airflow_python() is None,
                    reason="no Airflow virtualenv (.venv-airflow): run deploy/airflow/setup_venv.sh")
def test_dag_loads_and_runs_in_order_in_airflow(tmp_path):
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path),
               AIRFLOW__CORE__LOAD_EXAMPLES="False")
    report_file = tmp_path / "report.json"
    out = subprocess.run([_airflow_python(), str(DEPLOY / "airflow" / "check_dag.py"),
                          "--output", str(report_file)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    report = json.loads(report_file.read_text())
    tasks = report["tasks"]
    assert [t["task_id"] for t in tasks] == ORDER
    by_id = {t["task_id"]: t for t in tasks}
    for before, task in zip(ORDER, ORDER[1:]):
        expected = sorted({before, "choose_version"}) if task == "gate" \
            else [before]
        assert by_id[task]["upstream"] == expected
    version = tasks[0]["returned"]
    assert version == VERSION, "the version comes from the logical date"
    assert by_id["gate"]["verdicts"] == [True, False, False]
    assert by_id["gate"]["object"][1].endswith(
        "/models/%s/eval_report.json" % VERSION)
    for task_id, operator in OPERATORS.items():
        assert by_id[task_id]["operator"] == operator

    launch = by_id["build_dataset"]["rendered"]["body"]["launchParameter"]
    assert launch["parameters"]["output"].endswith("/datasets/" + version)
    flags = ["--%s=%s" % kv for kv in launch["parameters"].items()]
    assert unknown_pipeline_flags(flags) == []
    for step in ("train", "evaluate", "promote"):
        job = by_id[step]["rendered"]["custom_job"]
        args = job["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
        assert "--version=" + version in args, "XCom not passed to %s" % step
        check_retrain_args(args)
