#!/usr/bin/env bash
# Sets up .venv and runs the whole job on the bundled sample, no network needed:
# pipeline (DirectRunner, 2 workers) -> picture of the data -> training ->
# SavedModel -> predictions on held-out drawings, and the command that serves the drawing page.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=2
PY=.venv/bin/python
OUT=${OUT:-out}
STEPS=${STEPS:-500}

echo "== 1/4 pipeline: data/sample -> $OUT/dataset"
$PY -m pipeline.run --output="$OUT/dataset" \
  --train_observations_per_class=20 --eval_observations_per_class=5 --output_shards=4 \
  --direct_num_workers=2 --direct_running_mode=multi_processing

echo "== 2/4 render: $OUT/training_mosaic.png"
$PY -m pipeline.render --input="$OUT/dataset/training.tfrecord-*" --output="$OUT/training_mosaic.png" \
  --rows=5 --cols=8

echo "== 3/4 train: $STEPS steps -> $OUT/model, export in $OUT/model/export"
if [ -e "$OUT/model" ]; then
  # The trainer resumes from a model_dir's checkpoints: the demo starts afresh instead.
  echo "(removing $OUT/model, an earlier demo's model, to train afresh)"
  rm -rf "$OUT/model"
fi
$PY -m trainer.task \
  --training_data="$OUT/dataset/training.tfrecord-?????-of-?????" \
  --eval_data="$OUT/dataset/eval.tfrecord-?????-of-?????" \
  --classes_file="$OUT/dataset/training.tfrecord.classes" \
  --model_dir="$OUT/model" --steps="$STEPS" --batch_size=64 \
  --model=cnn --augment --label_smoothing=0.1 --no_bucketing --learning_rate=0.003 \
  --eval_every_steps=250 --checkpoint_every_steps=250

echo "== 4/4 predict: five held-out cats (eval split; the game's rule: accepted when p(cat) > 0.2)"
$PY -m serving.examples --examples="$OUT/dataset" --class=cat --count=5 \
  | $PY -m trainer.predict --model="$OUT/model/export" --input=- --top_k=3 --target=cat --threshold=0.2
echo "Done. Outputs in $OUT/: dataset/ (stats.json, TFRecords), training_mosaic.png, model/ (eval_report.json, confusion_matrix.png, reliability_diagram.png, export/)"
echo "Draw and let the model guess (then open http://127.0.0.1:8501/):"
echo "  .venv/bin/quickdraw-serve --model=$OUT/model/export --examples=$OUT/dataset --threshold=0.2"
