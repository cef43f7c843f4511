"""Saved models: each finished fold's weights at its reported epoch (safetensors, so loading runs
no pickled code) and a card (JSON) with what applying them needs: the model and head to build,
the input size and channels, the normalisation's numbers, the reported threshold and the run's
``config_hash``, so that ``segact-predict`` preprocesses exactly as training did. The card's
hash (it holds the weights' SHA-256) is kept in the fold's record and the run's summary.json, and
checked on loading: a card or weights file changed since (a threshold edited by hand) is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from segact.choices import plain
from segact.data import formats
from segact.data.normalize import STATS_SHAPE, Normalization
from segact.errors import ModelError
from segact.io import atomic_path, read_json, write_json
from segact.nn.heads import Head, build_head
from segact.nn.prune import without_dropped
from segact.runs.folder import FoldRecords, RunFolder, file_digest
from segact.training.engine import FoldSetup
from segact.training.fitting import build_model
from segact.training.forward import Forward, ForwardOptions, Precision
from segact.training.memory_format import uses_channels_last
from segact.training.settings import ModelConfig

CARD_VERSION = 1
SHOWN = 3  # tensor names listed in an error, per kind of difference
MODEL_HASH = "model_sha256"  # a fold record's hash of its saved model
SUMMARY_MODELS = "models"  # summary.json: fold (as text) -> the hash of its saved model

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if node else {}


def _dtype_name(raw: Any) -> str:
    """``uint8`` or ``float32``: how the dataset stored its pixels (numpy rows or a tensor)."""
    return str(raw.dtype).removeprefix("torch.")


def _numbers(stats: Tensor | None) -> list[float] | None:
    """Per-channel statistics as JSON numbers: each float32 value exactly (float64 holds it)."""
    return None if stats is None else stats.cpu().reshape(-1).tolist()


def input_card(dataset: DictConfig) -> dict[str, Any]:
    """What kind of input the model takes (2D images, or volumes cut into slices) and how the
    loader read it beyond the size."""
    fmt = formats.by_loader(dataset.get("_target_")) or formats.FORMATS["folder"]
    return fmt.card_input(_plain(dataset))


def model_entry(model: ModelConfig) -> dict[str, Any]:
    """A card's ``model``: what ``model_of`` builds the model from again (no pretrained weights:
    the card's own replace them)."""
    entry: dict[str, Any] = {"arch": model.arch, "encoder": model.encoder}
    if model.kwargs:
        entry["kwargs"] = model.kwargs
    return entry


def model_of(card: dict[str, Any]) -> ModelConfig:
    spec = card["model"]
    kwargs = spec.get("kwargs", {})
    return ModelConfig(spec["arch"], spec["encoder"], encoder_weights=None, kwargs=kwargs)


def forward_entry(options: ForwardOptions, device: torch.device) -> dict[str, Any]:
    """A card's ``forward``: the options of the model call as training used them (``auto``
    resolved for its device); segact-predict calls the model without ``torch.compile``."""
    return {
        "channels_last": uses_channels_last(options.channels_last, device.type),
        "precision": plain(options.precision),
    }


FORWARD_BEFORE_OPTIONS = {"channels_last": False, "precision": Precision.fp32.value}
"""What a card saved before segact recorded an option of the model call was trained with."""


def forward_of(card: dict[str, Any]) -> ForwardOptions:
    recorded = {**FORWARD_BEFORE_OPTIONS, **card["forward"]}
    return ForwardOptions(recorded["channels_last"], recorded["precision"], compile=False)


def run_card(setup: FoldSetup, cfg: DictConfig) -> dict[str, Any]:
    """The card of the run's models but for each fold's own ``fold`` and ``threshold``
    (``fold_card``): everything ``load_fold`` and ``segact-predict`` need."""
    settings, data, norm = setup.settings, setup.data, setup.data.normalization
    activation = {k: v for k, v in _plain(cfg.activation).items() if v is not None}
    if "_target_" not in activation:
        activation.pop("_partial_", None)
    mode = cfg.dataset.get("normalize") or ("none" if norm.mean is None else "dataset")
    stats = {"mean": _numbers(norm.mean), "std": _numbers(norm.std)}
    return {
        "version": CARD_VERSION,
        "config_hash": setup.config_hash,
        "fold": None,
        "model": model_entry(settings.model),
        "head": setup.head.name,
        "activation": activation,
        "in_channels": data.in_channels,
        "out_channels": setup.head.out_channels,
        "input_size": [int(s) for s in data.images.shape[-2:]],
        "input": input_card(cfg.dataset),
        "pixels": _dtype_name(data.images),
        "normalization": {"mode": plain(mode), "scale": norm.scale, **stats},
        "threshold": None,
        "eval_batch_size": settings.eval.batch_size,  # CPU kernels' sums vary with the batch
        "forward": forward_entry(settings.trainer.forward, setup.device),
    }


def fold_card(card: dict[str, Any], fold: int, threshold: float) -> dict[str, Any]:
    """The card of fold ``fold``'s model, from the run's (``run_card``; its keys in order)."""
    return {**card, "fold": fold, "threshold": float(threshold)}


def model_hash(card: dict[str, Any]) -> str:
    """The SHA-256 of a card's content (keys sorted, no whitespace). The card records its weights'
    SHA-256, so this one hash covers the card and the weights' bytes together; summary.json
    keeps it, so that a card edited by hand (a threshold, a normalisation) is noticed."""
    text = json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save_fold(run: RunFolder, fold: int, state: dict[str, Tensor], card: dict[str, Any]) -> str:
    """The weights, then the card with their SHA-256 (written last: it marks a complete pair);
    returns the model's hash (``model_hash``) for the fold's record and summary.json."""
    from safetensors.torch import save

    tensors = {name: value.detach().cpu().contiguous() for name, value in state.items()}
    # serialised in memory, then written as plain bytes: a full disk is an OSError naming the
    # file (one line), not safetensors' own error with a traceback
    weights = save(tensors, metadata={"config_hash": card["config_hash"]})
    with atomic_path(run.model_weights(fold)) as tmp:
        tmp.write_bytes(weights)
    write_json({**card, "sha256": file_digest(run.model_weights(fold))}, run.model_card(fold))
    return model_hash(read_json(run.model_card(fold)))  # as it reads back (JSON's own values)


def recorded_hashes(records: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """summary.json's entry of the folds' model hashes, from their records; {} where no fold
    saved a model (``runtime.save_models=false``)."""
    hashes = {str(k): r[MODEL_HASH] for k, r in sorted(records.items()) if r.get(MODEL_HASH)}
    return {SUMMARY_MODELS: hashes} if hashes else {}


def normalization_of(card: dict[str, Any]) -> Normalization:
    """The recorded normalisation, with the very float32 statistics training used."""
    norm = card["normalization"]
    if norm.get("mean") is None:
        return Normalization(norm.get("scale"))
    mean, std = (
        torch.tensor(norm[k], dtype=torch.float32).view(STATS_SHAPE) for k in ("mean", "std")
    )
    return Normalization(norm.get("scale"), mean, std)


def fresh_model(card: dict[str, Any]) -> nn.Module:
    return build_model(model_of(card), int(card["in_channels"]), int(card["out_channels"]))


def _listed(names: Sequence[str]) -> str:
    more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def check_tensors(saved: dict[str, Tensor], expected: dict[str, Tensor], path: Path) -> None:
    """One line naming the tensors that are missing, unexpected or of another shape."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = [
        f"{name} {'x'.join(map(str, saved[name].shape))} in the file, "
        f"{'x'.join(map(str, expected[name].shape))} in the model"
        for name in sorted(set(saved) & set(expected))
        if saved[name].shape != expected[name].shape
    ]
    problems = [f"missing {_listed(missing)}" if missing else "",
                f"unexpected {_listed(unexpected)}" if unexpected else "",
                f"shape of {_listed(shapes)}" if shapes else ""]  # fmt: skip
    if any(problems):
        differences = "; ".join(p for p in problems if p)
        raise ModelError(
            f"{path} does not fit the model its card describes ({differences}): the file is not "
            "this run's; train the run again"
        )


def read_card(
    run: RunFolder, fold: int, config_hash: str, saved_hash: str | None = None
) -> dict[str, Any]:
    """Fold ``fold``'s card, checked against the run (its ``config_hash``), its weights file and
    the model hash the run recorded, ``saved_hash`` (None: a run saved before model hashes)."""
    path, weights = run.model_card(fold), run.model_weights(fold)
    if not path.exists() or not weights.exists():
        raise ModelError(
            f"{run.path}: fold {fold} has no saved model ({path.parent.name}/{path.name} and "
            f"{weights.name}): train that fold again, or choose another with --fold"
        )
    try:
        card = read_json(path)
        weights_digest = card["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{path} cannot be read ({error}): train fold {fold} again") from None
    if card.get("config_hash") != config_hash:
        raise ModelError(
            f"{path} was saved by configuration {card.get('config_hash')}, but the run's "
            f"summary.json says {config_hash}: the model is not this run's; train it again"
        )
    if file_digest(weights) != weights_digest:
        raise ModelError(
            f"{weights}: fold {fold}'s weights changed since they were saved (their SHA-256 "
            f"differs from the one in {path.name}): restore them, or train fold {fold} again"
        )
    if saved_hash is not None and model_hash(card) != saved_hash:
        raise ModelError(
            f"{path}: fold {fold}'s model card changed since it was saved (its hash differs from "
            f"the one in {run.summary_json.name}): restore it, or train fold {fold} again"
        )
    return card


def load_fold(
    run: RunFolder, fold: int, config_hash: str, saved_hash: str | None = None
) -> tuple[dict[str, Any], nn.Module]:
    """Fold ``fold``'s card and model (checked by ``read_card``), its tensors checked against a
    freshly built model; a file saved with the modules the model never runs (before segact
    removed them: ``segact.nn.prune``) loads without them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = read_card(run, fold, config_hash, saved_hash)
    model = fresh_model(card)
    try:
        state = load_file(run.model_weights(fold))
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{run.model_weights(fold)} cannot be read ({error})") from None
    state = without_dropped(state, model)
    check_tensors(state, model.state_dict(), run.model_weights(fold))
    model.load_state_dict(state)
    return card, model.eval()


@dataclass
class Ensemble:
    """The models of a run's folds (or one of them), applied together: their foreground
    probabilities are averaged."""

    cards: list[dict[str, Any]]
    forwards: list[Forward]
    head: Head
    normalization: Normalization

    @property
    def card(self) -> dict[str, Any]:
        """The preprocessing every fold shares (one dataset, one normalisation)."""
        return self.cards[0]

    @property
    def threshold(self) -> float:
        """The mean of the folds' reported thresholds."""
        return float(np.mean([card["threshold"] for card in self.cards]))

    @torch.no_grad()
    def probabilities(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """(N, C, h, w) pixels as the dataset stored them -> (N, h, w) float32 probabilities."""
        out = []
        for start in range(0, len(pixels), batch_size):
            raw = torch.from_numpy(np.ascontiguousarray(pixels[start : start + batch_size]))
            x = self.normalization(raw.to(self.forwards[0].device))
            total = self.head.probability(self.forwards[0](x))
            for forward in self.forwards[1:]:
                total = total + self.head.probability(forward(x))
            mean = total if len(self.forwards) == 1 else total / len(self.forwards)
            out.append(mean[:, 0].float().cpu().numpy())
        return np.concatenate(out)


def run_summary(run: RunFolder, fold: int | None = None) -> dict[str, Any]:
    """The summary of a finished run, or, for one ``fold`` of a run still in progress (fold
    jobs), what its finished fold's record says; else a ModelError saying the folder is none."""
    summary = run.read_summary()
    if run.path.is_dir() and summary.get("status") == "ok" and summary.get("config_hash"):
        return summary
    if fold is not None and run.model_card(fold).exists():
        card_hash = str(read_json(run.model_card(fold)).get("config_hash", ""))
        record = FoldRecords(run, card_hash).load(fold)  # finished under that very identity
        if record is not None:
            hashes = recorded_hashes({fold: record})
            return {"config_hash": card_hash, "identity": {"trainer.folds": fold + 1}, **hashes}
    raise ModelError(
        f"{run.path} is not a finished segact run (its summary.json does not say ok"
        + ("" if fold is None else f", and fold {fold} has not finished")
        + "): give the folder of a run that finished (outputs/... or multirun/...)"
    )


def saved_hashes(
    run: RunFolder, summary: dict[str, Any], folds: list[int]
) -> dict[int, str | None]:
    """Each fold's model hash as the run recorded it; None, with one warning line, for folds of a
    run saved before segact recorded them (they are read as before, unverified)."""
    recorded = summary.get(SUMMARY_MODELS)
    hashes = {k: recorded.get(str(k)) if isinstance(recorded, dict) else None for k in folds}
    unverified = [str(k) for k, value in hashes.items() if value is None]
    if unverified:
        log.warning(
            "%s: %s records no hash of the model of fold(s) %s (saved by an older segact): "
            "their cards and weights cannot be verified",
            run.path,
            run.summary_json.name,
            ", ".join(unverified),
        )
    return hashes


def load_ensemble(run_dir: Path, fold: int | None, device: torch.device) -> Ensemble:
    """The models of every fold of the finished run at ``run_dir`` (or of ``fold``)."""
    run = RunFolder(run_dir)
    summary = run_summary(run, fold)
    n_folds = int(summary.get("identity", {}).get("trainer.folds", summary.get("folds", 0)))
    if not any(run.model_card(k).exists() for k in range(n_folds)):
        raise ModelError(
            f"{run.path} has no saved models (trained with runtime.save_models=false, or by a "
            "segact that did not save them): train it again with runtime.save_models=true"
        )
    if fold is not None and not 0 <= fold < n_folds:
        raise ModelError(f"--fold {fold}: {run.path} has folds 0 to {n_folds - 1}")
    hashes = saved_hashes(run, summary, list(range(n_folds)) if fold is None else [fold])
    cards, forwards = [], []
    for k, saved_hash in hashes.items():
        card, model = load_fold(run, k, summary["config_hash"], saved_hash)
        cards.append(card)
        forwards.append(Forward(model.to(device), forward_of(card), device))
    head = build_head({"name": cards[0]["head"]}, cards[0]["activation"])
    return Ensemble(cards, forwards, head, normalization_of(cards[0]).to(device))
