#!/usr/bin/env bash
# Sets up .venv and runs the test suite (what CI runs). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` for the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# Airflow lives in a virtualenv of its own (its pins fight TensorFlow's); the DAG
# test runs in it when it could be set up, and is skipped with a reason otherwise.
if AIRFLOW_PY=$(AIRFLOW_VENV="$PWD/.venv-airflow" timeout 900 bash deploy/airflow/setup_venv.sh | tail -n 1); then
  export QUICKDRAW_AIRFLOW_PYTHON="$AIRFLOW_PY"
else
  echo "warning: the Airflow virtualenv could not be set up; the DAG will be checked without Airflow" >&2
fi
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest -q -p no:cacheprovider -rs "$@"
