"""``trainer.channels_last``: the memory format of the model and its batches, without torch (the
run's identity resolves ``auto`` too, and the report, which reads identities, imports no torch)."""

from __future__ import annotations

AUTO = "auto"
"""The default: channels_last on a CUDA GPU, contiguous elsewhere (``uses_channels_last``)."""


def uses_channels_last(setting: bool | str, device_type: str) -> bool:
    """channels_last when true, contiguous when false; ``auto`` is channels_last on CUDA (the
    layout its convolution kernels prefer) and contiguous on a CPU (5-12 % faster on issue 33's
    AMD EPYC; on an Intel Xeon with AVX-512, channels_last was: results/bench/train.md)."""
    if setting == AUTO:
        return device_type == "cuda"
    return bool(setting)
