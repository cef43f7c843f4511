"""Models keep only the modules they run (``segact.nn.prune``): ``model=tiny`` (resnet18 at encoder
depth 3) drops ``layer3`` and ``layer4``, its saved models shrink from 45 MB to 3 MB a fold, and
its numbers and predictions are exactly those of the model with them; files and checkpoints
saved with them still load (or, for a checkpoint, the fold starts again)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from torch import Tensor, nn

import segact.training.fitting as fitting
from segact.config import run_settings
from segact.nn.prune import drop_unused_modules, dropped_modules
from segact.report.sweep_callback import saved_models
from segact.runs.folder import RunFolder
from segact.runs.models import load_ensemble
from segact.runs.runner import load_dataset, train
from segact.training.checkpoint import Saver
from segact.training.fitting import FoldProgress, Trainable, build_model
from tests.helpers import TIMING, compose_config

DROPPED = ("encoder.layer3", "encoder.layer4")
MAX_TINY_BYTES = 4_000_000  # a fold's weights (3.1 MB; 45 MB with the unused stages)


def whole(model: nn.Module, in_channels: int) -> tuple[str, ...]:
    """``drop_unused_modules`` turned off: the model as smp builds it (the code before)."""
    return ()


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cfg = compose_config()
    return build_model(run_settings(cfg).model, 3, 1)


def test_tiny_model_drops_the_stages_beyond_its_depth():
    model = tiny_model()
    assert dropped_modules(model) == DROPPED
    assert not any(name.startswith(DROPPED) for name in model.state_dict())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 32, 32)


def test_dropping_draws_no_random_number_and_keeps_the_used_weights(monkeypatch):
    pruned = tiny_model()
    after_pruned = torch.get_rng_state()
    monkeypatch.setattr(fitting, "drop_unused_modules", whole)
    full = tiny_model()
    assert torch.equal(after_pruned, torch.get_rng_state())
    full_state = full.state_dict()
    for name, tensor in pruned.state_dict().items():
        assert torch.equal(tensor, full_state[name]), name
    x = torch.linspace(0, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    assert torch.equal(pruned.eval()(x), full.eval()(x))


class Functional(nn.Module):
    """Reads a module's weight without calling it, and holds a module it never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.read = nn.Linear(64, 4)
        self.unused = nn.Linear(64, 4)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.read.weight)


def test_a_module_used_without_being_called_is_kept():
    model = Functional()
    names = list(model.state_dict())
    assert drop_unused_modules(model, 1) == ()
    assert list(model.state_dict()) == names  # all or nothing, each in its place


def test_a_model_the_probe_cannot_run_is_kept_whole():
    model = nn.Sequential(nn.Linear(3, 3))  # (1, 1, 64, 64) does not fit a Linear(3, 3)
    assert drop_unused_modules(model, 1) == ()


def test_a_checkpoint_of_the_whole_model_starts_the_fold_again(monkeypatch, tmp_path, caplog):
    """A checkpoint written before the unused stages were dropped does not fit the model: the
    fold starts from the beginning (the same numbers), with one warning, instead of failing."""
    cfg = run_settings(compose_config())
    monkeypatch.setattr(fitting, "drop_unused_modules", whole)
    old = Trainable.build(cfg, (3, 1), torch.device("cpu"), 0)
    fresh = FoldProgress(fitting.EarlyStopping(2))
    saver = Saver(tmp_path / "fold0.pt", 0, "hash")
    saver.maybe_save(old, None, FoldProgress(fitting.EarlyStopping(2), epoch=3), force=True)
    monkeypatch.undo()
    new = Trainable.build(cfg, (3, 1), torch.device("cpu"), 0)
    with caplog.at_level(logging.WARNING):
        assert Saver(tmp_path / "fold0.pt", 0, "hash").resume(new, None, fresh, 0) is fresh
    assert "starts again" in caplog.text


def test_saved_models_are_counted_with_their_size(tmp_path):
    run = tmp_path / "sweep" / "a"
    (run / "models").mkdir(parents=True)
    (run / "folds.csv").write_text("fold\n0\n")
    (run / "models" / "fold0.safetensors").write_bytes(b"x" * 1000)
    (run / "models" / "fold0.json").write_bytes(b"y" * 10)
    assert saved_models(tmp_path / "sweep") == (1, 1010)


def tiny_run(folder: Path) -> tuple[RunFolder, np.ndarray]:
    """A tiny run with saved models, and its ensemble's probabilities on every image."""
    cfg = compose_config("runtime.save_models=true", "trainer.channels_last=true")
    assert train(cfg, folder)["status"] == "ok"
    pixels = np.concatenate(list(load_dataset(cfg).images.blocks()))
    ensemble = load_ensemble(folder, None, torch.device("cpu"))
    return RunFolder(folder), ensemble.probabilities(pixels, 4)


@pytest.mark.slow
def test_numbers_and_predictions_are_those_of_the_whole_model(monkeypatch, tmp_path):
    """Trained with and without the unused stages: the same result files (timing aside) and the
    same predictions; the whole model's files (as segact saved them before) still load."""
    monkeypatch.setattr(fitting, "drop_unused_modules", whole)
    before, before_probability = tiny_run(tmp_path / "before" / "run")
    monkeypatch.undo()
    after, probability = tiny_run(tmp_path / "after" / "run")
    for name in ("folds_csv", "epochs_csv", "thresholds_csv"):
        old, new = (pd.read_csv(getattr(run, name)) for run in (before, after))
        pd.testing.assert_frame_equal(
            old.drop(columns=TIMING, errors="ignore"), new.drop(columns=TIMING, errors="ignore")
        )
    np.testing.assert_array_equal(probability, before_probability)
    for fold in (0, 1):
        assert before.model_weights(fold).stat().st_size > 10 * MAX_TINY_BYTES
        assert after.model_weights(fold).stat().st_size < MAX_TINY_BYTES
        with safe_open(after.model_weights(fold), "pt") as saved:
            assert not any(name.startswith(DROPPED) for name in saved.keys())  # noqa: SIM118
