#!/usr/bin/env bash
# Runs the Quick, Draw! pipeline on Dataflow over the full dataset.
#
#   PROJECT=my-project BUCKET=gs://my-bucket deploy/dataflow/launch.sh build
#       builds the image with Cloud Build and the Flex Template spec
#   PROJECT=my-project BUCKET=gs://my-bucket deploy/dataflow/launch.sh run
#       launches a job from the Flex Template
#   PROJECT=my-project BUCKET=gs://my-bucket deploy/dataflow/launch.sh direct
#       launches the same job from this machine (python -m pipeline.run);
#       the workers install the project from setup.py
#
# Settings (environment): REGION (us-central1), INPUT (the full simplified
# dataset), OUTPUT ($BUCKET/quickdraw/tfrecords/<UTC time>), MAX_WORKERS (32),
# MACHINE_TYPE (n2-standard-4), IMAGE, TEMPLATE, PYTHON.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
PROJECT=${PROJECT:?set PROJECT to your Google Cloud project}
BUCKET=${BUCKET:?set BUCKET to a gs:// bucket for output and staging}
REGION=${REGION:-us-central1}
INPUT=${INPUT:-gs://quickdraw_dataset/full/simplified/*.ndjson}
OUTPUT=${OUTPUT:-$BUCKET/quickdraw/tfrecords/$(date -u +%Y%m%d-%H%M%S)}
MAX_WORKERS=${MAX_WORKERS:-32}
MACHINE_TYPE=${MACHINE_TYPE:-n2-standard-4}
IMAGE=${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/quickdraw/pipeline:latest}
TEMPLATE=${TEMPLATE:-$BUCKET/quickdraw/templates/pipeline.json}
PYTHON=${PYTHON:-python}
JOB_NAME=quickdraw-$(date -u +%Y%m%d-%H%M%S)

# The pipeline's own parameters: the tutorial's 10,000 training and 1,000 eval
# drawings per class (plus 1,000 test), 32 shards per split (benchmarks/sizing.py:
# 96 write tasks for 128 cores, a training shard of about 76 MB).
PARAMETERS=(
  input="$INPUT"
  output="$OUTPUT"
  train_observations_per_class=10000
  eval_observations_per_class=1000
  test_observations_per_class=1000
  output_shards=32
)

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

case "$MODE" in
  build)
    run gcloud builds submit --project="$PROJECT" --region="$REGION" \
      --config=deploy/dataflow/cloudbuild.yaml \
      --substitutions=_IMAGE="$IMAGE" .
    run gcloud dataflow flex-template build "$TEMPLATE" \
      --project="$PROJECT" \
      --image="$IMAGE" \
      --sdk-language=PYTHON \
      --metadata-file=deploy/dataflow/metadata.json
    ;;
  run)
    PARAMETER_FLAGS=()
    for p in "${PARAMETERS[@]}"; do
      PARAMETER_FLAGS+=("--parameters=$p")
    done
    run gcloud dataflow flex-template run "$JOB_NAME" \
      --project="$PROJECT" \
      --region="$REGION" \
      --template-file-gcs-location="$TEMPLATE" \
      --temp-location="$BUCKET/quickdraw/tmp" \
      --staging-location="$BUCKET/quickdraw/staging" \
      --max-workers="$MAX_WORKERS" \
      --worker-machine-type="$MACHINE_TYPE" \
      "${PARAMETER_FLAGS[@]}"
    ;;
  direct)
    PIPELINE_FLAGS=()
    for p in "${PARAMETERS[@]}"; do
      PIPELINE_FLAGS+=("--$p")
    done
    run "$PYTHON" -m pipeline.run \
      "${PIPELINE_FLAGS[@]}" \
      --runner=DataflowRunner \
      --project="$PROJECT" \
      --region="$REGION" \
      --job_name="$JOB_NAME" \
      --temp_location="$BUCKET/quickdraw/tmp" \
      --staging_location="$BUCKET/quickdraw/staging" \
      --setup_file=./setup.py \
      --max_num_workers="$MAX_WORKERS" \
      --machine_type="$MACHINE_TYPE"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
