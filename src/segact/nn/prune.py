"""Modules a built model never runs, removed: smp builds every stage of an encoder whatever
``encoder_depth`` asks (resnet18 builds four; ``model=tiny`` at depth 3 runs two), and the
unused ``layer3`` and ``layer4`` hold 93 % of its weights (a saved fold: 45 MB with them, 3 MB
without), which every saved model and checkpoint would otherwise carry.

They are found by running the model once on a fixed input (eval mode, no gradient, no random
draw) and noting which modules were called; a module that holds tensors and was never called is
removed from its parent, and the model's output is checked to be exactly what it was (else every
module is put back, in its place). The random draws that initialised the model all happened
before, so a model trains, bit for bit, as it would with the unused modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

DROPPED = "segact_dropped_modules"
"""The model's attribute naming the modules removed (dotted names, as in its state dict)."""
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
"""Parents whose children are never removed: their forward loops over them, or indices name
them (removing one would rename the others)."""
PROBE_SIDE = 64  # pixels of the probe input (at least twice the encoder's output stride)

V = TypeVar("V")


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _outputs(output: Any) -> list[Tensor]:
    """The tensors of a model's output (a tensor, or a tuple of them with an auxiliary head)."""
    return [output] if isinstance(output, Tensor) else [t for t in output if t is not None]


def _probe(model: nn.Module, in_channels: int) -> Tensor:
    """A fixed input (a ramp, no random draw) the model accepts: its sides a multiple of the
    encoder's output stride."""
    stride = int(getattr(getattr(model, "encoder", None), "output_stride", 32))
    side = max(PROBE_SIDE, 2 * stride)
    n = in_channels * side * side
    return torch.linspace(-1.0, 1.0, n).reshape(1, in_channels, side, side)


def _run(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The model's output on ``x`` in eval mode, changing no state of the model or of torch's
    random generator."""
    training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            return _outputs(model.eval()(x))
    finally:
        model.train(training)


def _called(model: nn.Module, x: Tensor) -> tuple[set[str], list[Tensor]]:
    """The names of the modules called on ``x``, and the output."""
    called: set[str] = set()
    hooks = [
        module.register_forward_pre_hook(lambda *_, name=name: called.add(name))
        for name, module in model.named_modules()
    ]
    try:
        return called, _run(model, x)
    finally:
        for hook in hooks:
            hook.remove()


def _unused(model: nn.Module, called: set[str]) -> list[str]:
    """The uppermost modules holding tensors that no call reached (neither they nor anything
    inside them), whose parent is an ordinary module that was reached."""
    reached = {
        name.rsplit(".", depth)[0] for name in called for depth in range(name.count(".") + 1)
    }
    reached |= called | {""}
    unused = []
    for parent_name, parent in model.named_modules():
        if parent_name not in reached or isinstance(parent, CONTAINERS):
            continue
        for child_name, child in parent.named_children():
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if name not in reached and _holds_tensors(child):
                unused.append(name)
    return unused


def _detach(model: nn.Module, names: Iterable[str]) -> dict[str, dict[str, nn.Module | None]]:
    """Remove the modules ``names``; returns each parent's children as they were."""
    before: dict[str, dict[str, nn.Module | None]] = {}
    for name in names:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        before.setdefault(parent_name, dict(parent._modules))
        delattr(parent, child_name)
    return before


def _restore(model: nn.Module, before: Mapping[str, dict[str, nn.Module | None]]) -> None:
    """The children as they were, in their order (the order of the parameters and the state)."""
    for parent_name, children in before.items():
        modules = model.get_submodule(parent_name)._modules
        modules.clear()
        modules.update(children)


def drop_unused_modules(model: nn.Module, in_channels: int) -> tuple[str, ...]:
    """Remove the modules ``model`` never calls (see the module's docstring); returns their
    names, also kept in the model's ``DROPPED`` attribute. A model the probe cannot run, or
    whose output changes without them, is left whole."""
    x = _probe(model, in_channels)
    try:
        called, expected = _called(model, x)
    except Exception:  # a model the probe cannot run is kept whole, as built
        return ()
    removed = tuple(_unused(model, called))
    before = _detach(model, removed)
    try:
        same = all(torch.equal(a, b) for a, b in zip(_run(model, x), expected, strict=True))
    except Exception:  # it needed a removed module: put them back
        same = False
    if not same:
        _restore(model, before)
        removed = ()
    setattr(model, DROPPED, removed)
    return removed


def dropped_modules(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, DROPPED, ()))


def without_dropped(state: dict[str, V], model: nn.Module) -> dict[str, V]:
    """``state`` (a state dict saved before the modules were removed) without the tensors of
    ``model``'s removed modules."""
    prefixes = tuple(f"{name}." for name in dropped_modules(model))
    return {key: value for key, value in state.items() if not key.startswith(prefixes)}
