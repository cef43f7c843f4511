"""CUDA graphs of the training step (forward, loss, backward, optimizer step) and of the
evaluation forward pass, replayed on static input buffers (``trainer.cuda_graphs``).

Why a manual whole-step capture (``torch.cuda.graph``) rather than
``torch.compile(mode="reduce-overhead")`` or ``make_graphed_callables``: the captured graph
replays exactly the kernels eager mode launches, so a graphed epoch gives the same numbers as an
eager one (the run's identity leaves ``cuda_graphs`` out); it takes one graph for the whole step,
the optimizer's ~100 foreach kernels included (``make_graphed_callables`` graphs the model only);
capture costs about a second per fold, where compiling a resnet34 Unet costs minutes and fuses
kernels into other roundings; and the short last batch of an epoch simply runs eagerly instead
of recompiling for a new shape.

What it takes: the learning rate lives in a device tensor and Adam/AdamW are built with
``capturable=True`` (``capturable_optimizer``: on CUDA whether graphs are used or not, so both
paths compute the same step and a ReduceLROnPlateau ``fill_`` needs no recapture); the warm-up
steps that must precede a capture are undone in place (weights, buffers, optimizer state, random
state), so the fold trains from where it stood. Where a capture is impossible the fold trains
eagerly and one log line names the reason (``graph_plan``, ``TrainGraph``, ``EvalGraph``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from segact.choices import Choice

log = logging.getLogger(__name__)

WARMUP_STEPS = 3
"""Eager steps on a side stream before a capture (lazy state, cuDNN and cuBLAS handles), as the
torch.cuda.graph documentation asks; undone afterwards."""
CAPTURABLE_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW")
"""Optimizers whose step can live in a graph (``capturable=True``, a tensor ``lr``)."""


class CudaGraphs(Choice):
    """``trainer.cuda_graphs``: capture the training and evaluation steps as CUDA graphs."""

    auto = "auto"  # on for CUDA where possible, else eager (one log line says why)
    on = "on"  # as auto, but a fallback to eager is a warning
    off = "off"  # always eager


@dataclass(frozen=True)
class GraphPlan:
    """Whether a run's folds capture graphs; ``reason`` says why not (empty when they do)."""

    use: bool
    reason: str = ""


def capturable_optimizer(target: str | None, device: torch.device) -> bool:
    """Whether the optimizer is built capturable with a device-tensor lr: Adam/AdamW on CUDA."""
    return device.type == "cuda" and target in CAPTURABLE_OPTIMIZERS


def graph_plan(
    mode: str,
    device: torch.device,
    *,
    compile: bool = False,
    augment: bool = False,
    optimizer: str | None = "torch.optim.Adam",
) -> GraphPlan:
    """The run-level decision: every condition that rules graphs out, the first one named."""
    if mode == CudaGraphs.off:
        return GraphPlan(False, "trainer.cuda_graphs=off")
    if device.type != "cuda":
        return GraphPlan(False, f"CUDA graphs need a CUDA device; this run trains on {device}")
    if compile:
        return GraphPlan(False, "trainer.compile=true: torch.compile manages its own graphs")
    if augment:
        return GraphPlan(False, "the augmentation runs on the host, batch by batch")
    if optimizer not in CAPTURABLE_OPTIMIZERS:
        return GraphPlan(
            False,
            f"optimizer {optimizer} cannot be captured (only {', '.join(CAPTURABLE_OPTIMIZERS)} "
            "take capturable=True and a tensor lr)",
        )
    return GraphPlan(True)


def announce(plan: GraphPlan, mode: str, device: torch.device) -> None:
    """One log line per run: a warning when graphs were asked for, info under ``auto`` on CUDA,
    debug where nothing could be captured anyway (a CPU run)."""
    if plan.use:
        log.info("CUDA graphs: the training and evaluation steps are captured once per fold")
    elif mode == CudaGraphs.on:
        log.warning("CUDA graphs off, training eagerly: %s", plan.reason)
    elif mode == CudaGraphs.auto and device.type == "cuda":
        log.info("CUDA graphs off, training eagerly: %s", plan.reason)
    else:
        log.debug("CUDA graphs off, training eagerly: %s", plan.reason)


# --- capture -------------------------------------------------------------------------------


class Replay:
    """A captured graph and its static output."""

    def __init__(self, graph: Any, output: Any) -> None:
        self.graph, self.output = graph, output

    def __call__(self) -> Any:
        self.graph.replay()
        return self.output


class EagerReplay:
    """A test double of ``cuda_capture`` for CPU: runs the function at each replay, on the same
    static buffers, after the same warm-up (so the bookkeeping around a capture is tested)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def __call__(self) -> Any:
        return self.fn()


Capture = Callable[[Callable[[], Any]], Callable[[], Any]]


def cuda_capture(fn: Callable[[], Any]) -> Replay:
    """Warm ``fn`` up on a side stream, then capture one call of it (torch.cuda.graph)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_STEPS):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = fn()
    return Replay(graph, output)


def eager_capture(fn: Callable[[], Any]) -> EagerReplay:
    for _ in range(WARMUP_STEPS):
        fn()
    return EagerReplay(fn)


@contextlib.contextmanager
def undone(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Iterator[None]:
    """Undo, in place (a graph holds these very tensors), what the block did to the weights,
    buffers, optimizer state and random state: the warm-up steps before a capture."""
    tensors = [*model.parameters(), *model.buffers()]
    saved = [t.detach().clone() for t in tensors]
    states = optimizer.state if optimizer is not None else {}
    had = {
        p: {k: v.clone() for k, v in s.items() if isinstance(v, Tensor)} for p, s in states.items()
    }
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for tensor, value in zip(tensors, saved, strict=True):
                    tensor.copy_(value)
                for param, state in states.items():
                    _restore_state(state, had.get(param, {}))


def _restore_state(state: dict[str, Any], before: dict[str, Tensor]) -> None:
    """An optimizer state back to ``before``; a state created by the warm-up back to zeros, as
    Adam creates it (step 0, zero moments)."""
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        if key in before:
            value.copy_(before[key])
        else:
            value.zero_()


def _same_shapes(static: Sequence[Tensor], given: Sequence[Tensor]) -> bool:
    return all(
        s.shape == g.shape and s.dtype == g.dtype for s, g in zip(static, given, strict=True)
    )


class _Graphed:
    """Static input buffers and one captured function of them; eager for other shapes."""

    what = "step"

    def __init__(self, fold: int, capture: Capture) -> None:
        self.fold, self.capture = fold, capture
        self.static: list[Tensor] = []
        self.replay: Callable[[], Any] | None = None
        self.failed = False

    def _fits(self, inputs: Sequence[Tensor], expected: int) -> bool:
        """Whether ``inputs`` can be replayed: captured (now if need be) with their shapes. A
        short batch (``expected`` rows not reached) runs eagerly without a word."""
        if self.failed or inputs[0].shape[0] != expected:
            return False
        if self.replay is None:
            return self._capture(inputs)
        if _same_shapes(self.static, inputs):
            return True
        self._give_up(
            f"a dynamic shape ({tuple(inputs[0].shape)} after {tuple(self.static[0].shape)})"
        )
        return False

    def _capture(self, inputs: Sequence[Tensor]) -> bool:
        self.static = [torch.empty_like(x) for x in inputs]
        for buffer, x in zip(self.static, inputs, strict=True):
            buffer.copy_(x)
        try:
            with self._undo():
                self.replay = self.capture(self._body)
        except Exception as error:  # any capture error: this fold trains eagerly
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._give_up(f"capture failed ({type(error).__name__}: {first})")
            return False
        return True

    def _give_up(self, reason: str) -> None:
        self.failed, self.replay = True, None
        log.warning("fold %d: the %s runs eagerly from now on: %s", self.fold, self.what, reason)

    def _undo(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def _body(self) -> Any:
        raise NotImplementedError

    def run(self, inputs: Sequence[Tensor]) -> Any:
        for buffer, x in zip(self.static, inputs, strict=True):
            buffer.copy_(x)
        assert self.replay is not None
        return self.replay()


class TrainGraph(_Graphed):
    """The training step of full batches: ``run((x, y))`` -> (the batch loss, its gradients),
    static tensors valid until the next step."""

    what = "training step"

    def __init__(
        self,
        step: Callable[[Tensor, Tensor], Tensor],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        fold: int = 0,
        capture: Capture = cuda_capture,
    ) -> None:
        super().__init__(fold, capture)
        self.step_fn, self.model, self.optimizer, self.batch_size = (
            step,
            model,
            optimizer,
            batch_size,
        )

    def fits(self, x: Tensor, y: Tensor) -> bool:
        return self._fits((x, y), self.batch_size)

    def _undo(self) -> contextlib.AbstractContextManager:
        return undone(self.model, self.optimizer)

    def _body(self) -> tuple[Tensor, list[Tensor]]:
        """The step, and the gradients it computed (the graph's own tensors once captured)."""
        loss = self.step_fn(self.static[0], self.static[1])
        return loss, [p.grad for p in self.model.parameters() if p.grad is not None]


class EvalGraph(_Graphed):
    """The evaluation forward pass of full batches: ``run((x,))`` -> (logits, probabilities)."""

    what = "evaluation forward pass"

    def __init__(
        self,
        predict: Callable[[Tensor], tuple[Tensor, Tensor]],
        batch_size: int,
        fold: int = 0,
        capture: Capture = cuda_capture,
    ) -> None:
        super().__init__(fold, capture)
        self.predict, self.batch_size = predict, batch_size

    def fits(self, x: Tensor) -> bool:
        return self._fits((x,), self.batch_size)

    def _body(self) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return self.predict(self.static[0])
