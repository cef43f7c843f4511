"""The model's forward pass with the trainer's speed options: memory format, precision, compile.

The only place the model is called, in training and evaluation alike, so every option applies
to both. scripts/bench_train.py measures each option.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from segact.choices import Choice, plain
from segact.training.memory_format import uses_channels_last


class Precision(Choice):
    """``trainer.precision``: the forward pass's floating-point precision."""

    auto = "auto"  # bf16 autocast on GPUs that support it, fp32 elsewhere
    fp32 = "fp32"
    bf16 = "bf16"


def uses_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast when asked, or on ``auto`` for a CUDA GPU that supports it (not on CPU:
    measured 15.8x slower on a CPU without bf16 units, results/bench/train.md)."""
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


@dataclass(frozen=True)
class ForwardOptions:
    """The trainer's options of the model call (``trainer.channels_last``, ``.precision``,
    ``.compile``; their defaults: ``segact.training.settings.TrainerConfig``), or a model card's."""

    channels_last: bool | str  # true, false or auto (uses_channels_last)
    precision: Precision | str
    compile: bool


class Forward:
    """Calls the model on a batch moved to the device, returns float32 logits."""

    def __init__(self, model: nn.Module, options: ForwardOptions, device: torch.device) -> None:
        self.device = device
        self.model = model
        channels_last = uses_channels_last(options.channels_last, device.type)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=self.memory_format)
        self._call: Callable[[Tensor], Tensor] = torch.compile(model) if options.compile else model
        self.bf16 = uses_bf16(str(plain(options.precision)), device)
        # Off where CUDA graphs are captured (torch.cuda.graph asks for it); the same numbers.
        self.autocast_cache = True

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, cache_enabled=self.autocast_cache
        )

    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, memory_format=self.memory_format, non_blocking=True)
        with self.autocast():
            logits = self._call(x)
        return logits.float()
