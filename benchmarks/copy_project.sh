#!/usr/bin/env bash
# Shared by real_data.sh and ablation.sh: a copy of this project's last commit (no sample data) at
# WORK, with PARAMS as its params.yaml, a real dataset ingested into its data/ (split stratified and
# seeded by data.split), tracked by DVC and committed in its own git repository. Usage:
#   benchmarks/copy_project.sh DATASET_DIR PARAMS_FILE WORK
# DATASET_DIR: a flat {real,fake} folder (or train|valid|test/{real,fake}).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:?usage: benchmarks/copy_project.sh DATASET_DIR PARAMS_FILE WORK}"
params="${2:?usage: benchmarks/copy_project.sh DATASET_DIR PARAMS_FILE WORK}"
work="${3:?usage: benchmarks/copy_project.sh DATASET_DIR PARAMS_FILE WORK}"
[ -d "$data" ] || { echo "no such folder: $data" >&2; exit 2; }
[ -f "$params" ] || { echo "no such params file: $params" >&2; exit 2; }
[ ! -e "$work/dvc.yaml" ] || { echo "$work already holds a project: choose another folder" >&2; exit 2; }
data="$(cd "$data" && pwd)"; params="$(cd "$(dirname "$params")" && pwd)/$(basename "$params")"

export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=2
command -v deepfake-detect >/dev/null || { echo "run 'make venv' first" >&2; exit 2; }
commit() { git -c user.name=bench -c user.email=bench@localhost commit -qm "$1"; }

echo "== copying the project to $work"
mkdir -p "$work"
(cd "$here" && git archive --format=tar HEAD) | tar -x -C "$work" --exclude=dvc-storage --exclude=data.dvc
echo "   (commit $(git -C "$here" rev-parse --short HEAD); uncommitted changes are not copied)"
cp "$params" "$work/params.yaml"
cd "$work"
git init -q && git add -A && commit "benchmark copy"

echo "== ingesting $data"
deepfake-detect ingest "$data" data
mv data/ingest_report.json ingest_report.json
dvc add data && git add data.dvc .gitignore ingest_report.json && commit "data"
