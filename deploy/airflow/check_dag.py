"""Loads the retraining DAG with Airflow and dry-runs it, before you upload it.

Run it with the Python of an environment that has Airflow and the Google and
Apache Beam providers (deploy/airflow/requirements.txt), not the project's:

    AIRFLOW_HOME=$(mktemp -d) $(deploy/airflow/setup_venv.sh) \
        deploy/airflow/check_dag.py [--output report.json]

It parses the DAG folder with Airflow's DagBag (what Composer's scheduler does),
then walks the tasks in Airflow's topological order: the ``choose_version``
task really runs (for the logical date LOGICAL_DATE), the ``gate`` task's
verdict is computed from a passing and a refusing eval report instead of one
read from Cloud Storage, and every other task has its templates rendered
with the XComs of the tasks before it instead of calling Google Cloud. It
prints one JSON object: the order, each task's operator, upstream tasks and
rendered request (the Dataflow launch body or the Vertex AI CustomJob).
"""
from __future__ import annotations

import datetime
import json
import os
import sys

DAG_FOLDER = os.path.dirname(os.path.abspath(__file__))
DAG_ID = "quickdraw_retrain"
LOGICAL_DATE = datetime.datetime(2026, 1, 5, 3, 0, tzinfo=datetime.timezone.utc)


class _TaskInstance:
    """The part of a task instance the DAG's templates use: XCom reads."""

    def __init__(self, xcoms: dict[str, object]):
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        if task_ids not in self.xcoms:
            raise RuntimeError("template reads the XCom of %r, which has not "
                               "run yet" % task_ids)
        return self.xcoms[task_ids]


def _load_dag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    bag = DagBag(dag_folder=DAG_FOLDER)
    if bag.import_errors:
        raise SystemExit("DAG import errors: %s" % bag.import_errors)
    if DAG_ID not in bag.dags:
        raise SystemExit("no DAG %r in %s" % (DAG_ID, DAG_FOLDER))
    return bag.dags[DAG_ID]


def dry_run() -> dict:
    dag = _load_dag()
    xcoms: dict[str, object] = {}
    tasks = []
    for task in dag.topological_sort():
        missing = [t for t in task.upstream_task_ids if t not in xcoms]
        if missing:
            raise SystemExit("%s would run before %s" % (task.task_id, missing))
        context = {"ti": _TaskInstance(xcoms), "dag": dag, "task": task}
        entry = {"task_id": task.task_id, "operator": type(task).__name__,
                 "upstream": sorted(task.upstream_task_ids)}
        if task.task_id == "choose_version":
            xcoms[task.task_id] = task.python_callable(logical_date=LOGICAL_DATE)
            entry["returned"] = xcoms[task.task_id]
        elif task.task_id == "gate":
            dag_file = task.python_callable.__globals__  # the DAG module's names
            entry["object"] = dag_file["eval_report_object"](xcoms["choose_version"])
            entry["verdicts"] = [dag_file["gate_passed"]({"gate": {"promoted": True}}),
                                 dag_file["gate_passed"]({"gate": {"promoted": False}}),
                                 dag_file["gate_passed"]({})]
            xcoms[task.task_id] = True
        else:
            task.render_template_fields(context)
            entry["rendered"] = {f: getattr(task, f) for f in task.template_fields
                                 if f in ("body", "custom_job")}
            xcoms[task.task_id] = None
        tasks.append(entry)
    return {"dag_id": dag.dag_id, "schedule": str(dag.schedule)
            if hasattr(dag, "schedule") else None, "tasks": tasks}


if __name__ == "__main__":
    # Airflow logs to stdout; ``--output FILE`` keeps the JSON apart from it.
    result = json.dumps(dry_run(), indent=2, default=str)
    if len(sys.argv) == 3 and sys.argv[1] == "--output":
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            f.write(result + "\n")
    else:
        print(result)
