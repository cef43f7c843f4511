#!/usr/bin/env bash
# Stage (git add) the run folders under results/runs/ whose summary.json says ok, and nothing of
# the runs still in flight: their small files only (CSV, summary.json, .hydra/; .gitignore keeps
# parts/, checkpoints/, locks/ and logs out). Then commit as usual.
#
#   scripts/stage_finished_runs.sh [RUNS_FOLDER]   (default: results/runs)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-results/runs}
count=0
while IFS= read -r -d '' summary; do
    if grep -q '"status": "ok"' "$summary"; then
        git add -- "$(dirname "$summary")"
        count=$((count + 1))
    fi
done < <(find "$runs" -name summary.json -print0)
find "$runs" -maxdepth 1 -name multirun.yaml -exec git add -- {} +
echo "staged $count finished run folder(s) under $runs"
