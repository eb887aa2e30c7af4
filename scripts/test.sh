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
# The drawing page's browser test drives Debian's Chromium; install it where we can
# (root, apt reachable). Without it that test is skipped with its reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
      apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 \
    || echo "warning: Chromium could not be installed; the browser test will be skipped" >&2
fi
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest -q -p no:cacheprovider -rs "$@"
