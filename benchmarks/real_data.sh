#!/usr/bin/env bash
# Run the whole pipeline on a real dataset, in a temporary copy of the project, and print the
# summary table. Usage:
#   benchmarks/real_data.sh DATASET_DIR [PARAMS_FILE] [KEEP_DIR]
# DATASET_DIR: a flat {real,fake} folder (or train|valid|test/{real,fake}); it is ingested
# (split stratified and seeded by data.split) into the copy, never into this repository.
# PARAMS_FILE: default benchmarks/params-benchmark.yaml (about an hour on 2 CPU cores for
# ~1,600 images, under that for fewer). KEEP_DIR: where the copy is made (default: a new temporary folder); its
# mlflow.db holds the runs (`mlflow ui --backend-store-uri sqlite:///KEEP_DIR/mlflow.db`).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:?usage: benchmarks/real_data.sh DATASET_DIR [PARAMS_FILE] [KEEP_DIR]}"
params="${2:-$here/benchmarks/params-benchmark.yaml}"
work="${3:-$(mktemp -d -t deepfake-bench-XXXXXX)}"
unset MLFLOW_TRACKING_URI
"$here/benchmarks/copy_project.sh" "$data" "$params" "$work"
export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=2
cd "$work"

echo "== dvc repro ($(date -u +%FT%TZ))"
start=$(date +%s)
dvc repro
echo "== done in $(( $(date +%s) - start )) s; runs in $work/mlflow.db"
cat reports/summary.md
python "$here/benchmarks/file_size_baseline.py" "$work"
echo "== test AUC under each perturbation, 95% intervals"
python "$here/benchmarks/robustness_intervals.py" "$work"
