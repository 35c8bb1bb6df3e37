#!/usr/bin/env bash
# The recipe ablation of benchmarks/README.md, run the way the README tells users to sweep: one
# queued DVC experiment per change (`dvc exp run --queue -n NAME -S ...`), run one after another by
# `dvc queue start`, every MLflow run of an experiment tagged `dvc_exp=NAME`. Each experiment
# trains, thresholds and evaluates the light SE-CNN (the from-scratch network) with ONE setting
# changed against the base profile. Usage:
#   benchmarks/ablation.sh DATASET_DIR WORK [PARAMS_FILE] [EXPERIMENT ...]
# WORK: a new folder for the project copy (benchmarks/copy_project.sh); an existing copy is reused.
# PARAMS_FILE: the base profile (default benchmarks/params-ablation-base.yaml, the profile before the recipe).
# EXPERIMENT: names from the lists below (default: every single change; the recipe-* rows, which
# change several settings at once, run when named).
# Then: `benchmarks/ablation_table.py WORK` prints the table (val AUC, test AUC with its 95%
# interval, minutes); `cd WORK && dvc exp show` compares the same experiments in DVC.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:?usage: benchmarks/ablation.sh DATASET_DIR WORK [PARAMS_FILE] [EXPERIMENT ...]}"
work="${2:?usage: benchmarks/ablation.sh DATASET_DIR WORK [PARAMS_FILE] [EXPERIMENT ...]}"
params="${3:-$here/benchmarks/params-ablation-base.yaml}"
shift $(( $# < 3 ? $# : 3 ))
unset MLFLOW_TRACKING_URI
[ -e "$work/dvc.yaml" ] || "$here/benchmarks/copy_project.sh" "$data" "$params" "$work"
export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=2
cd "$work"

declare -A CHANGES=(
  [base]=""
  [focal-alpha-0.5]="loss.alpha=0.5"
  [cross-entropy]="loss.gamma=0 loss.alpha=null"
  [stop-on-val-auc]="train.monitor=val_auc"
  [cosine]="train.schedule=cosine"
  [adamw]="train.weight_decay=0.01"
  [flips-only]="data.augment.rotation=0 data.augment.zoom=0 data.augment.brightness=0 data.augment.contrast=0"
  [no-rotation-zoom]="data.augment.rotation=0 data.augment.zoom=0"
  [no-brightness-contrast]="data.augment.brightness=0 data.augment.contrast=0"
  [native-256]="data.image_size=256"
  [patches-96]="data.view=patches data.patch_size=96"
  [self-blend]="data.augment.self_blend=0.5"
  [two-convs-per-block]="models.light_se_cnn.convs_per_block=2"
  [wider]="models.light_se_cnn.filters=[48,96,192,384]"
  [30-epochs]="train.epochs=30 train.patience=30"
  [noise-stream]="models.light_se_cnn.stream=noise"  # the SRM noise stream instead of the pixels
  [noise-and-rgb]="models.light_se_cnn.stream=both"  # the noise stream stacked with the pixels
)
# The rows that change several settings at once (the recipe's steps); not in the default order.
RECIPE_A="loss.gamma=0 loss.alpha=null ${CHANGES[flips-only]} train.monitor=val_auc train.schedule=cosine train.epochs=30 train.patience=10"
CHANGES+=(
  [recipe-a]="$RECIPE_A"
  [recipe-a-selfblend]="$RECIPE_A data.augment.self_blend=0.5"
  [recipe-a-2conv]="$RECIPE_A models.light_se_cnn.convs_per_block=2"
  [recipe-a-2conv-selfblend]="$RECIPE_A models.light_se_cnn.convs_per_block=2 data.augment.self_blend=0.5"
  [recipe-2conv-wider]="$RECIPE_A models.light_se_cnn.convs_per_block=2 models.light_se_cnn.filters=[48,96,192,384]"
  [recipe-2conv-128]="$RECIPE_A models.light_se_cnn.convs_per_block=2 data.image_size=128"
)
ORDER=(base cross-entropy flips-only self-blend stop-on-val-auc focal-alpha-0.5 cosine adamw
       no-rotation-zoom no-brightness-contrast native-256 patches-96 two-convs-per-block wider 30-epochs)
[ $# -gt 0 ] && ORDER=("$@")

for name in "${ORDER[@]}"; do
  [ -v "CHANGES[$name]" ] || { echo "unknown experiment $name; known: ${!CHANGES[*]}" >&2; exit 2; }
  set_args=()
  for kv in ${CHANGES[$name]}; do set_args+=(-S "$kv"); done
  echo "== queue $name: ${CHANGES[$name]:-(the base profile)}"
  dvc exp run --queue -n "$name" "${set_args[@]}" evaluate@light_se_cnn
done
echo "== dvc queue start ($(date -u +%FT%TZ))"
dvc queue start -j 1
# (not `dvc queue status | grep -q`: under pipefail, grep's early exit fails the pipeline)
until status="$(dvc queue status)"; ! grep -qE 'Queued|Running' <<<"$status"; do sleep 30; done
echo "$status"
python "$here/benchmarks/ablation_table.py" "$work"
