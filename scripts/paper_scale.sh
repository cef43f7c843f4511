#!/usr/bin/env bash
# Dice loss with sigmoid vs arctan at the paper's size: Kvasir-SEG at 256 px, resnet34 Unet,
# 5 folds, the paper's schedule (trainer=paper). Writes the run folders to OUT/runs and a timing
# summary (training images/s, s/epoch, training and wall time) to OUT/timing.md, and prints it.
#
#   scripts/paper_scale.sh [--quick] [--dataset-root PATH] [OUT] [-- HYDRA_OVERRIDES...]
#
#   OUT                  output folder (default: results/paper_scale)
#   --quick              1 epoch of fold 0 at 64 px on CPU with model=tiny (a smoke test)
#   --dataset-root PATH  the Kvasir-SEG folder (images/ + masks/): dataset.root=PATH
#   -- OVERRIDES         more Hydra overrides, applied last (e.g. trainer.seed=1)
#
# Without --quick, trainer.device=auto takes a CUDA GPU where there is one, and
# trainer.precision=auto trains there with bf16 autocast. Started again, finished runs are
# skipped and an interrupted one resumes from its checkpoint.
set -euo pipefail

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail() { echo "paper_scale.sh: $*" >&2; exit 2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=""
quick=0
dataset_root=""
extra=()
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --dataset-root) (($# > 1)) || fail "--dataset-root needs a path"; dataset_root="$2"; shift ;;
    --dataset-root=*) dataset_root="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) usage >&2; fail "unknown option $1" ;;
    *) [[ -z "$out" ]] || fail "one output folder only (got $out and $1)"; out="$1" ;;
  esac
  shift
done
out="${out:-results/paper_scale}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The repository's virtualenv, else segact-train on PATH (and the Python it runs with).
if [[ -x "$repo/.venv/bin/python" ]]; then
  python="$repo/.venv/bin/python"
  train=("$python" -m segact.train)
elif command -v segact-train > /dev/null; then
  train=(segact-train)
  python="$(sed -n '1s/^#![[:space:]]*//p' "$(command -v segact-train)")"
  [[ -x "$python" ]] || python=python3
elif python3 -c "import segact.train" 2> /dev/null; then  # e.g. PYTHONPATH=.device/site:src
  python=python3
  train=("$python" -m segact.train)
else
  fail "no $repo/.venv and no segact-train on PATH: run 'make main' or pip install -e ."
fi

overrides=(
  dataset=kvasir_seg dataset.image_size=256 model=unet trainer=paper
  loss=dice activation=sigmoid,arctan "hydra.sweep.dir=$out/runs"
)
if ((quick)); then
  overrides+=(model=tiny trainer.max_epochs=1 trainer.fold=0 dataset.image_size=64 trainer.device=cpu)
  device="cpu (--quick)"
else
  device="$("$python" -c 'import torch
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"
  device="$device (trainer.device=auto)"
fi
[[ -z "$dataset_root" ]] || overrides+=("dataset.root=$dataset_root")
overrides+=(${extra[@]+"${extra[@]}"})

command=("${train[@]}" -m "${overrides[@]}")
echo "+ ${command[*]}" >&2
start="$(date +%s.%N)"
"${command[@]}"
end="$(date +%s.%N)"
wall="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"

quoted="$(printf '%q ' "${command[@]}")"
"$python" "$repo/scripts/paper_scale_summary.py" "$out" --wall-seconds "$wall" \
  --device "$device" --command "${quoted% }"
