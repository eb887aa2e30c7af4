"""docs/deploy.md 'Scheduled retraining' (lines 359-364, 389-391): the gate's
defaults (`--min_accuracy` 0, the DAG 0.5; `--promotion_margin` 0.02) and the
exit statuses 0, 1 and 3."""
from __future__ import annotations

import ast

from deploy import retrain
from sample_paths import REPO


def test_gate_defaults():
    d = {o: a.default for a in retrain.build_parser()._actions for o in a.option_strings}
    assert d["--min_accuracy"] == 0 and d["--promotion_margin"] == 0.02


def test_the_dag_sets_min_accuracy_0_5():
    tree = ast.parse((REPO / "deploy" / "airflow" / "quickdraw_retrain_dag.py").read_text())
    values = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    call = values["MIN_ACCURACY"]   # os.environ.get("QUICKDRAW_MIN_ACCURACY", "0.5")
    assert isinstance(call, ast.Call) and ast.literal_eval(call.args[1]) == "0.5"
    assert ast.literal_eval(values["PROMOTION_MARGIN"]) == "0.02"


def test_exit_statuses():
    assert (retrain.EXIT_OK, retrain.EXIT_FAILED, retrain.EXIT_REFUSED) == (0, 1, 3)
