#!/usr/bin/env bash
# The forensic recipe's ablation as queued DVC experiments (as benchmarks/ablation.sh does for the
# light CNN): each row trains, thresholds, evaluates and re-scores under the perturbations the
# residual_cooc network with its settings changed cumulatively from the plain residual detector
# (one scale, raw histograms, clean training images, one head) to the benchmark recipe, then the
# recipe with train.refit (out-of-fold threshold, head refitted on train+valid). Usage:
#   benchmarks/forensic_ablation.sh DATASET_DIR WORK [EXPERIMENT ...]
# WORK: a new folder for the project copy (benchmarks/copy_project.sh, benchmark profile); reused if present.
# Then `benchmarks/ablation_table.py WORK --model residual_cooc` (val/test AUC with 95% intervals, minutes) and
# `cd WORK && dvc exp show --keep 'Experiment|.*residual_cooc.json:(auc|clean|jpeg_75|blur_1|downscale_50).*'`.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:?usage: benchmarks/forensic_ablation.sh DATASET_DIR WORK [EXPERIMENT ...]}"
work="${2:?usage: benchmarks/forensic_ablation.sh DATASET_DIR WORK [EXPERIMENT ...]}"
shift 2
unset MLFLOW_TRACKING_URI
[ -e "$work/dvc.yaml" ] || "$here/benchmarks/copy_project.sh" "$data" "$here/benchmarks/params-benchmark.yaml" "$work"
export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=2
cd "$work"

m=models.residual_cooc
A4="[{jpeg: 75}, {jpeg: 90}, {blur: 1.0}, {downscale: 0.5}]"
A8="[{jpeg: 75}, {jpeg: 90}, {blur: 1.0}, {downscale: 0.5}, {jpeg: [60, 95]}, {jpeg: 60}, {blur: 0.5}, {downscale: 0.75}]"
PLAIN="$m.scales=[1] $m.spam=false $m.hellinger=false $m.head=single $m.degrade=[]"
declare -A CHANGES=(
  [res-plain]="$PLAIN"
  [res-sqrt]="$PLAIN $m.hellinger=true"
  [res-sqrt-x2]="$PLAIN $m.hellinger=true $m.scales=[1,2]"
  [res-sqrt-x2-spam]="$PLAIN $m.hellinger=true $m.scales=[1,2] $m.spam=true"
  [plus-a4]="$PLAIN $m.hellinger=true $m.scales=[1,2] $m.spam=true $m.degrade='$A4'"
  [plus-a8]="$PLAIN $m.hellinger=true $m.scales=[1,2] $m.spam=true $m.degrade='$A8'"
  [recipe-gated]=""  # the benchmark profile itself: A8 copies and the gated head
  [recipe-refit]="train.refit=true"  # + k-fold out-of-fold threshold, head refitted on train+valid
)
ORDER=(res-plain res-sqrt res-sqrt-x2 res-sqrt-x2-spam plus-a4 plus-a8 recipe-gated recipe-refit)
[ $# -gt 0 ] && ORDER=("$@")

for name in "${ORDER[@]}"; do
  [ -v "CHANGES[$name]" ] || { echo "unknown experiment $name; known: ${!CHANGES[*]}" >&2; exit 2; }
  set_args=()
  eval "for kv in ${CHANGES[$name]}; do set_args+=(-S \"\$kv\"); done"
  echo "== queue $name: ${CHANGES[$name]:-(the benchmark profile)}"
  dvc exp run --queue -n "$name" "${set_args[@]}" evaluate@residual_cooc robustness@residual_cooc
done
echo "== dvc queue start ($(date -u +%FT%TZ))"
dvc queue start -j 1
until status="$(dvc queue status)"; ! grep -qE 'Queued|Running' <<<"$status"; do sleep 30; done
echo "$status"
python "$here/benchmarks/ablation_table.py" "$work" --model residual_cooc --robustness jpeg_90 jpeg_75 blur_1 downscale_50
