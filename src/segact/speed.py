"""The model's forward pass with the trainer's speed options: memory format, precision, compile.

Each option is off by default unless scripts/bench_train.py shows it pays on the target machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

PRECISIONS = ("32", "bf16")


class Forward:
    """Calls the model on a batch moved to the device, returns float32 logits."""

    def __init__(self, model: nn.Module, trainer: DictConfig, device: torch.device) -> None:
        self.device = device
        self.memory_format = (
            torch.channels_last if trainer.get("channels_last", False) else torch.contiguous_format
        )
        model.to(memory_format=self.memory_format)
        self._call: Callable[[Tensor], Tensor] = (
            torch.compile(model) if trainer.get("compile", False) else model
        )
        self._bf16 = trainer.get("precision", "32") == "bf16"

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self._bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, memory_format=self.memory_format, non_blocking=True)
        with self.autocast():
            logits = self._call(x)
        return logits.float()
