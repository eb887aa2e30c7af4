#!/usr/bin/env bash
# Starts the local Flink cluster of docker-compose.yaml and runs the pipeline
# on the bundled sample through the Beam job server.
#   deploy/flink/run_local.sh            start the cluster, run, keep it up
#   deploy/flink/run_local.sh down       stop the cluster
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/../.."

export QUICKDRAW_FLINK_DIR=${QUICKDRAW_FLINK_DIR:-/tmp/quickdraw-flink}
PYTHON=${PYTHON:-python}
COMPOSE=(docker compose -f deploy/flink/docker-compose.yaml)

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

if [ "${1:-}" = down ]; then
  run "${COMPOSE[@]}" down
  exit 0
fi

run mkdir -p "$QUICKDRAW_FLINK_DIR/input"
run cp data/sample/*.ndjson "$QUICKDRAW_FLINK_DIR/input/"
run "${COMPOSE[@]}" up -d --build --wait

run "$PYTHON" -m pipeline.run \
  --runner=PortableRunner \
  --job_endpoint=localhost:8099 \
  --artifact_endpoint=localhost:8098 \
  --environment_type=EXTERNAL \
  --environment_config=localhost:50000 \
  --input="$QUICKDRAW_FLINK_DIR/input/*.ndjson" \
  --output="$QUICKDRAW_FLINK_DIR/output" \
  --output_shards=2

echo "TFRecords in $QUICKDRAW_FLINK_DIR/output; Flink UI at http://localhost:8081" >&2
