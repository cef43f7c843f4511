#!/usr/bin/env bash
# The device check of trainer.cuda_graphs and trainer.fold_group (issue 26), made to fit one
# call of a 10-minute device lease:
#   1. scripts/bench_gpu.py: bare step, the runner's step eager vs graphed at batch 8, a
#      fold-epoch alone vs 10 folds side by side -> OUT/gpu.md
#   2. scripts/paper_scale.sh (Kvasir-SEG, 256 px, resnet34, trainer=paper, sigmoid vs arctan:
#      2 runs of 5 folds, both at once through joblib, each run's folds side by side) for the
#      time left; stopped by SIGTERM at the budget, it saves checkpoints and the same command
#      resumes it (the work folder is kept on a warm machine)
#   3. finished run folders packed into OUT/runs.tar.gz (CSV, JSON, .hydra: never checkpoints or
#      weights; a device call brings back at most 8 files, 2 folders deep, so one archive)
#
#   scripts/gpu_check.sh OUT [--quick] [--dataset-root PATH] [--budget SECONDS] [--work DIR]
#
#   --dataset-root PATH  the Kvasir-SEG folder (default: .device/kvasir_seg where
#                        scripts/device_bundle.sh made it, else ../shared/datasets/kvasir_seg)
#   --budget SECONDS     the whole check's wall time (default 540: a 600 s limit, with margin)
#   --work DIR           where the runs train (default: multirun/gpu_check, git-ignored)
#   --quick              tiny model on CPU, a few seconds each step: the smoke test
set -euo pipefail

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail() { echo "gpu_check.sh: $*" >&2; exit 2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=""
quick=0
budget=540
dataset_root="$repo/../shared/datasets/kvasir_seg"
[[ -d "$repo/.device/kvasir_seg" ]] && dataset_root="$repo/.device/kvasir_seg"
work="$repo/multirun/gpu_check"
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --dataset-root) (($# > 1)) || fail "--dataset-root needs a path"; dataset_root="$2"; shift ;;
    --budget) (($# > 1)) || fail "--budget needs seconds"; budget="$2"; shift ;;
    --work) (($# > 1)) || fail "--work needs a folder"; work="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; fail "unknown option $1" ;;
    *) [[ -z "$out" ]] || fail "one output folder only (got $out and $1)"; out="$1" ;;
  esac
  shift
done
[[ -n "$out" ]] || { usage >&2; fail "OUT is required"; }
[[ -d "$dataset_root" ]] || fail "no dataset folder $dataset_root (--dataset-root PATH)"
mkdir -p "$out" "$work"
out="$(cd "$out" && pwd)"
work="$(cd "$work" && pwd)"
python="$repo/.venv/bin/python"
if [[ ! -x "$python" ]]; then  # a device machine: its python3 has torch; the rest is carried
  python="$(command -v python3)"
  if [[ -d "$repo/.device/site" ]]; then  # scripts/device_bundle.sh
    export PYTHONPATH="$repo/.device/site:$repo/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$python" -c "import hydra, segmentation_models_pytorch, segact.train" ||
    fail "$python cannot import segact's dependencies: run scripts/device_bundle.sh and carry .device"
fi
started="$(date +%s)"
elapsed() { echo $(($(date +%s) - started)); }

# 1. The measurements (at most 45 % of the budget).
bench=("$python" "$repo/scripts/bench_gpu.py" "$out/gpu.md" --dataset-root "$dataset_root")
paper=(-- trainer.fold_group=5 launcher=joblib hydra.launcher.n_jobs=2)
paper+=(runtime.save_models=false runtime.checkpoint_every_s=30)
if ((quick)); then
  bench+=(--quick --group 2 --epochs 2)
  # Both folds of each run (--quick trains fold 0 alone), side by side: finished runs to copy.
  paper=(--quick -- trainer.fold=null trainer.folds=2 trainer.fold_group=2 trainer.threads=1)
  paper+=(runtime.progress=false runtime.save_models=false)
fi
echo "+ ${bench[*]}" >&2
bench_rc=0
timeout -k 10 "$((budget * 45 / 100))" "${bench[@]}" || bench_rc=$?
((bench_rc == 0)) || echo "bench_gpu.py stopped with exit status $bench_rc (see above)" >> "$out/gpu.md"

# 2. The paper-scale comparison for the time left (30 s kept to copy the results).
left=$((budget - $(elapsed) - 30))
paper_rc=skipped
if ((left > 60)); then
  paper_rc=0
  timeout -k 45 "$left" bash "$repo/scripts/paper_scale.sh" "$work" \
    --dataset-root "$dataset_root" "${paper[@]}" || paper_rc=$?
fi
{
  echo
  echo "## Paper scale (scripts/paper_scale.sh ${paper[*]})"
  echo
  case "$paper_rc" in
    0) cat "$work/timing.md" ;;
    124 | 137) echo "stopped at the time budget after ${left} s; the same command resumes it" ;;
    skipped) echo "not started: $(elapsed) of ${budget} s used by the measurements" ;;
    *) echo "paper_scale.sh failed with exit status $paper_rc" ;;
  esac
} >> "$out/gpu.md"

# 3. Finished runs (summary.json says ok) without checkpoints or weights.
finished=()
if [[ -d "$work/runs" ]]; then
  while IFS= read -r summary; do
    if grep -q '"status": "ok"' "$summary"; then
      finished+=("$(dirname "${summary#"$work/runs/"}")")
    fi
  done < <(find "$work/runs" -name summary.json)
fi
if ((${#finished[@]})); then  # one archive: a device call returns few files, 2 folders deep
  tar -C "$work/runs" --exclude=checkpoints --exclude=models --exclude='*.safetensors' \
    --exclude='*.pt' --exclude=locks --exclude=parts -czf "$out/runs.tar.gz" "${finished[@]}"
fi
echo "finished runs packed into runs.tar.gz: ${#finished[@]}; wall time $(elapsed) s" >> "$out/gpu.md"
cat "$out/gpu.md"
