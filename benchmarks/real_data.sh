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
[ -d "$data" ] || { echo "no such folder: $data" >&2; exit 2; }
[ -f "$params" ] || { echo "no such params file: $params" >&2; exit 2; }
data="$(cd "$data" && pwd)"; params="$(cd "$(dirname "$params")" && pwd)/$(basename "$params")"

export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=2
unset MLFLOW_TRACKING_URI
command -v deepfake-detect >/dev/null || { echo "run 'make venv' first" >&2; exit 2; }

echo "== copying the project to $work"
mkdir -p "$work"
(cd "$here" && git ls-files -z | grep -zv -e '^dvc-storage/' -e '^data.dvc$' | xargs -0 cp --parents -t "$work")
cp "$params" "$work/params.yaml"
cd "$work"
git init -q && git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm "benchmark copy"

echo "== ingesting $data"
deepfake-detect ingest "$data" data
mv data/ingest_report.json ingest_report.json
dvc add -q data && git add data.dvc .gitignore && git -c user.name=bench -c user.email=bench@localhost commit -qm "data"

echo "== dvc repro ($(date -u +%FT%TZ))"
start=$(date +%s)
dvc repro
echo "== done in $(( $(date +%s) - start )) s; runs in $work/mlflow.db"
cat reports/summary.md
