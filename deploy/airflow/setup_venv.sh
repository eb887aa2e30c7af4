#!/usr/bin/env bash
# Creates the separate Airflow virtualenv that check_dag.py and the DAG test
# use, apart from the project's environment.
# Prints the Python to export as QUICKDRAW_AIRFLOW_PYTHON.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${AIRFLOW_VENV:-$HOME/.cache/quickdraw/airflow-venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
echo "$VENV/bin/python"
