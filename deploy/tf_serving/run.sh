#!/usr/bin/env bash
# Serves an export with TF Serving's container on http://localhost:8501, the
# same REST API as quickdraw-serve (but the signature's padded inputs, see
# deploy/serving_request.py):
#   bash deploy/tf_serving/run.sh out/model/export
#   python -m deploy.serving_request --input=drawings.ndjson > /tmp/request.json
#   curl -s -d @/tmp/request.json http://localhost:8501/v1/models/quickdraw:predict
# TF_SERVING_IMAGE: a TF Serving release that knows the ops of the TensorFlow
# that exported the model (the project pins TF 2.21); override as needed.
set -euo pipefail
EXPORT=${1:?usage: run.sh EXPORT_DIR}
IMAGE=${TF_SERVING_IMAGE:-tensorflow/serving:2.18.0}
HERE=$(cd "$(dirname "$0")" && pwd)
MODELS=${MODELS_DIR:-$(mktemp -d)}
# TF Serving loads <base_path>/<number>/: the export's global step is its version.
VERSION=$(python -c "import sys, tensorflow as tf; print(int(tf.saved_model.load(sys.argv[1]).global_step.numpy()))" "$EXPORT")
mkdir -p "$MODELS/quickdraw"
cp -r "$EXPORT" "$MODELS/quickdraw/$VERSION"
echo "serving $EXPORT as quickdraw version $VERSION from $MODELS"
exec docker run --rm -p 8501:8501 -p 8500:8500 \
  -v "$MODELS:/models" -v "$HERE:/config:ro" "$IMAGE" \
  --model_config_file=/config/models.config \
  --enable_batching=true --batching_parameters_file=/config/batching.config \
  --rest_api_port=8501
