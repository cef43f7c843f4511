"""``trainer.channels_last=auto`` (the default): contiguous on a CPU, channels_last on CUDA
(results/bench/train.md). The format used is in summary.json's provenance and the model card;
the identity holds it as true or false (as runs recorded it before auto), and ``trainer=paper``,
which every committed run used, keeps true: committed runs keep their hashes and numbers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from segact.config import run_settings, validate
from segact.errors import ConfigError
from segact.io import read_json
from segact.runs import identity
from segact.runs.folder import RunFolder
from segact.runs.models import forward_entry, forward_of, model_entry, model_of
from segact.runs.runner import run_context, train
from segact.training.fitting import build_model
from segact.training.forward import Forward, ForwardOptions, Precision
from segact.training.memory_format import uses_channels_last
from tests.helpers import compose_config

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("setting", "device", "expected"),
    [("auto", "cpu", False), ("auto", "cuda", True), (True, "cpu", True), (False, "cuda", False)],
)
def test_auto_is_contiguous_on_cpu_and_channels_last_on_cuda(setting, device, expected):
    assert uses_channels_last(setting, device) is expected


def test_the_default_trains_contiguous_on_cpu():
    cfg = compose_config()
    assert cfg.trainer.channels_last == "auto"
    settings = run_settings(cfg)
    model = build_model(settings.model, 3, 1)
    assert Forward(model, settings.trainer.forward, CPU).memory_format == torch.contiguous_format
    chosen = Forward(model, forward_of({"forward": {"channels_last": True}}), CPU)  # an older card
    assert chosen.memory_format == torch.channels_last


def test_a_model_card_round_trips_through_the_typed_settings():
    """The card's model and forward entries are written from the run's typed settings and read
    back into the same types; a card older than an option means what training did then."""
    settings = run_settings(compose_config("trainer.channels_last=auto", "trainer.precision=bf16"))
    card = {
        "model": model_entry(settings.model),
        "forward": forward_entry(settings.trainer.forward, CPU),
    }
    assert model_of(card) == dataclasses.replace(settings.model, encoder_weights=None)
    assert forward_of(card) == ForwardOptions(False, Precision.bf16, compile=False)
    older = forward_of({"forward": {"channels_last": True}})
    assert older == ForwardOptions(True, Precision.fp32, compile=False)


def _hash(device_type: str, *overrides: str) -> str:
    return identity.config_hash(identity.identity(compose_config(*overrides), device_type, 1))


@pytest.mark.parametrize(("device_type", "same_as"), [("cpu", "false"), ("cuda", "true")])
def test_auto_is_the_run_of_the_format_it_resolves_to(device_type, same_as):
    """One hash for one computation: auto on a CPU is the contiguous run, on CUDA the
    channels_last one (true and false as runs recorded them before auto existed)."""
    hashes = {
        v: _hash(device_type, f"trainer.channels_last={v}") for v in ("auto", "true", "false")
    }
    assert hashes["auto"] == hashes[same_as] != hashes["true" if same_as == "false" else "false"]


def test_the_paper_trainer_keeps_the_committed_runs_format():
    """Every committed run used trainer=paper, composed with channels_last true before auto."""
    assert compose_config("trainer=paper").trainer.channels_last is True
    assert _hash("cpu", "trainer=paper") == _hash(
        "cpu", "trainer=paper", "trainer.channels_last=true"
    )


def test_another_value_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"trainer\.channels_last"):
        validate(compose_config("trainer.channels_last=sometimes"))


def test_the_run_context_resolves_auto_for_its_device(tmp_path):
    ctx = run_context(compose_config(), tmp_path, None, CPU, 1)
    assert ctx.resolved == {"resolved.channels_last": False}


@pytest.mark.slow
def test_summary_and_model_card_record_the_format_used(tmp_path):
    summary = train(compose_config("trainer.max_epochs=1", "runtime.save_models=true"), tmp_path)
    assert summary["provenance"]["resolved.channels_last"] is False
    assert read_json(RunFolder(tmp_path).summary_json)["identity"]["trainer.channels_last"] is False
    card = read_json(RunFolder(tmp_path).model_card(0))
    assert card["forward"]["channels_last"] is False
