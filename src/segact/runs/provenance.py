"""Where a run was computed: the CPU (model and the vector extensions its kernels may use), the
GPU, and the versions of torch, CUDA, cuDNN and segact (with its git commit).

Float training is reproducible on one machine, not across machines: another CPU's kernels (AVX2
vs AVX-512 vs AMX) sum in another order, so the same config hash can give other numbers. The run
records this block in summary.json, and each fold its ``hardware`` label in folds.csv, so that a
report can say when one table mixes machines.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import segact

VECTOR_EXTENSIONS: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "neon", "sve")
"""The /proc/cpuinfo flags that change which float kernels torch runs."""


@functools.cache
def cpu() -> tuple[str, tuple[str, ...]]:
    """(model name, vector extensions present) of this machine's CPU."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, ()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and value.strip():
            model = value.strip()
        elif name.strip() in ("flags", "Features"):
            flags |= set(value.split())
    return model, tuple(e for e in VECTOR_EXTENSIONS if e in flags)


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout segact runs from (None for an installed wheel)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(segact.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def hardware(device: torch.device) -> str:
    """The label a fold records: the GPU's name on CUDA, else the CPU and its extensions."""
    if device.type == "cuda":
        return f"gpu: {torch.cuda.get_device_name(device)}"
    model, extensions = cpu()
    return f"cpu: {model} ({', '.join(extensions) or 'no vector extensions seen'})"


def provenance(device: torch.device) -> dict[str, Any]:
    """summary.json's ``provenance`` block."""
    model, extensions = cpu()
    cuda = torch.cuda.is_available()
    return {
        "hardware": hardware(device),
        "cpu": model,
        "cpu_vector_extensions": list(extensions),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "segact": segact.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
    }
