#!/usr/bin/env bash
# Serves an export on a Vertex AI endpoint with the prebuilt TensorFlow
# prediction container (TF Serving inside: the request is the signature's
# padded inputs, as for deploy/tf_serving), then asks it about drawings.
#   PROJECT=my-project REGION=europe-west4 EXPORT=gs://my-bucket/quickdraw/model/export \
#     bash deploy/vertex/endpoint.sh drawings.ndjson
# VERTEX_IMAGE: a prebuilt prediction container whose TensorFlow is at least as
# new as the one that exported (the project pins TF 2.21); override as needed.
set -euo pipefail
DRAWINGS=${1:?usage: endpoint.sh DRAWINGS.ndjson}
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${EXPORT:?set EXPORT (a gs:// export dir)}"
IMAGE=${VERTEX_IMAGE:-us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-18:latest}
MACHINE=${MACHINE_TYPE:-n1-standard-2}
NAME=${MODEL_NAME:-quickdraw}

gcloud ai models upload --project="$PROJECT" --region="$REGION" \
  --display-name="$NAME" --container-image-uri="$IMAGE" --artifact-uri="$EXPORT"
MODEL_ID=$(gcloud ai models list --project="$PROJECT" --region="$REGION" \
  --filter="displayName=$NAME" --sort-by=~createTime --limit=1 --format="value(name)")
ENDPOINT_ID=$(gcloud ai endpoints list --project="$PROJECT" --region="$REGION" \
  --filter="displayName=$NAME" --format="value(name)" | head -n 1)
if [ -z "$ENDPOINT_ID" ]; then
  gcloud ai endpoints create --project="$PROJECT" --region="$REGION" --display-name="$NAME"
  ENDPOINT_ID=$(gcloud ai endpoints list --project="$PROJECT" --region="$REGION" \
    --filter="displayName=$NAME" --format="value(name)" | head -n 1)
fi
gcloud ai endpoints deploy-model "$ENDPOINT_ID" --project="$PROJECT" --region="$REGION" \
  --model="$MODEL_ID" --display-name="$NAME" --machine-type="$MACHINE" \
  --min-replica-count=1 --max-replica-count="${MAX_REPLICAS:-3}" --traffic-split=0=100

REQUEST=$(mktemp)
python -m deploy.serving_request --input="$DRAWINGS" > "$REQUEST"
gcloud ai endpoints predict "$ENDPOINT_ID" --project="$PROJECT" --region="$REGION" \
  --json-request="$REQUEST"
