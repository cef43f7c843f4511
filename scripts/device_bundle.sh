#!/usr/bin/env bash
# What a GPU device machine lacks for scripts/gpu_check.sh, in one git-ignored folder to carry:
# .device/site (segact's pure-Python dependencies that the machine's image does not hold:
# Hydra, OmegaConf and its parser runtime, smp, tabulate and Hydra's joblib launcher, installed
# with --no-deps at this virtualenv's versions) and .device/kvasir_seg (the dataset, 44 MB).
# The image already has torch, torchvision, timm, numpy, pandas, scipy, statsmodels,
# matplotlib, safetensors, joblib and tqdm (/work/.library/device/KINDS.md).
#
#   scripts/device_bundle.sh [--dataset-root PATH]
#
# Then, in one device call (the whole tree plus .device stays under the 64 MiB a call carries):
#   run(command="bash scripts/gpu_check.sh $OUT", carry=[".device"], timeout_s=600)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dataset_root="$repo/../shared/datasets/kvasir_seg"
while (($#)); do
  case "$1" in
    --dataset-root) dataset_root="$2"; shift ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_bundle.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -d "$dataset_root/images" ]] || { echo "device_bundle.sh: no $dataset_root/images" >&2; exit 2; }
python="$repo/.venv/bin/python"
[[ -x "$python" ]] || { echo "device_bundle.sh: no $repo/.venv: run make install" >&2; exit 2; }

# The versions this repository is tested with, read from its virtualenv.
packages=(hydra-core omegaconf antlr4-python3-runtime segmentation-models-pytorch
  hydra-joblib-launcher tabulate)
pinned=()
for name in "${packages[@]}"; do
  version="$("$python" -m pip show "$name" 2> /dev/null | sed -n 's/^Version: //p')"
  [[ -n "$version" ]] || { echo "device_bundle.sh: $name is not in .venv" >&2; exit 2; }
  pinned+=("$name==$version")
done

rm -rf "$repo/.device"
mkdir -p "$repo/.device"
"$python" -m pip install --quiet --no-deps --no-compile --target "$repo/.device/site" "${pinned[@]}"
cp -r "$dataset_root" "$repo/.device/kvasir_seg"
grep -qx '/.device/' "$repo/.git/info/exclude" 2> /dev/null ||
  echo '/.device/' >> "$repo/.git/info/exclude"
du -sh "$repo/.device/site" "$repo/.device/kvasir_seg"
echo "carry .device: ${pinned[*]}"
