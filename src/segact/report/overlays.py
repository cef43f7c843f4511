"""Overlays: what two activations' fold models predict on a few validation images.

Per dataset and loss where both activations of the first compared pair have saved models
(``runtime.save_models``): one seed (the smallest both have) and fold 0. Each model is applied
to that fold's validation images, read by the loader training used (the run's
``.hydra/config.yaml``), and thresholded at its fold's reported threshold. The rows are the 3
images whose two masks disagree most, then a typical one (the median Dice of the rest); the
columns: image, truth, each activation's probability map and mask, and the disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.errors import InstantiationException
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from omegaconf import DictConfig, OmegaConf

from segact.data.base import Raw, SegmentationData
from segact.data.fingerprint import dataset_fingerprint
from segact.errors import ConfigError, ModelError
from segact.io import write_figure
from segact.nn.activations import EPS
from segact.report.plots import DPI, activation_color
from segact.runs import schema
from segact.runs.folder import RunFolder
from segact.runs.identity import CHOICES, DATA_FINGERPRINT, REPLICATES, setting_columns
from segact.runs.models import Ensemble, load_ensemble
from segact.runs.runner import load_dataset
from segact.training.engine import resolve_device

FIGURE = "overlays.png"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
FOLD = 0
DISAGREEING = 3  # rows per block: the images whose masks disagree most, then a typical one
COLUMNS = 7  # image, truth, (probability, mask) per activation, disagreement
PANEL_INCHES = 1.7
LEGEND_INCHES = 0.6
CLIP = (np.float32(EPS), np.float32(1 - EPS))  # the evaluation's clip of probabilities
AGREED = (0.85, 0.85, 0.85)  # foreground in both masks
BACKGROUND_SHADE = 0.35  # the image, dimmed, under the disagreement pixels


class Skipped(Exception):
    """A block that cannot be drawn here: its message is the report's note."""


@dataclass
class Block:
    """One dataset x loss: the images shown and, per activation, what its model made of them."""

    dataset: str
    loss: str
    seed: int
    activations: tuple[str, str]
    thresholds: tuple[float, float]
    names: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) or (H, W) in [0, 1]
    truths: list[np.ndarray] = field(default_factory=list)  # (H, W) bool
    probabilities: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    disagreements: list[int] = field(default_factory=list)


def _has_model(run_path: object) -> bool:
    """Whether the run folder has fold 0's model (no folder: rows read from a results.csv)."""
    if not isinstance(run_path, str):
        return False
    run = RunFolder(Path(run_path))
    return run.model_card(FOLD).exists() and run.model_weights(FOLD).exists()


def _pair_key(used: pd.DataFrame) -> list[str]:
    """The identity columns two runs of a pair share: all but the activation and replicates."""
    columns = [*CHOICES, *setting_columns(used)]
    return [
        c for c in dict.fromkeys(columns)
        if c in used.columns and not c.startswith("activation") and c not in REPLICATES
    ]  # fmt: skip


Pair = tuple[pd.Series, pd.Series]


def chosen_runs(used: pd.DataFrame, a: str, b: str) -> dict[tuple[str, str], Pair]:
    """(dataset, loss) -> the fold-0 rows of ``a`` and ``b``: runs alike in every setting but the
    activation, both with saved models, at the smallest seed they share."""
    rows = used[(used["fold"] == FOLD) & used["activation"].astype(str).isin([a, b])]
    rows = rows[[_has_model(p) for p in rows["run_path"]]]
    key = _pair_key(used)
    chosen: dict[tuple[str, str], Pair] = {}
    for _, group in rows.groupby([*key, "seed"], sort=True, dropna=False):
        first = {str(act): g.iloc[0] for act, g in group.groupby("activation", sort=False)}
        place = (str(group["dataset"].iloc[0]), str(group["loss"].iloc[0]))
        if a in first and b in first:
            best = chosen.get(place)
            if best is None or int(first[a]["seed"]) < int(best[0]["seed"]):
                chosen[place] = (first[a], first[b])
    return chosen


def run_config(row: pd.Series) -> DictConfig:
    path = Path(row["run_path"]) / HYDRA_CONFIG
    if not path.is_file():
        raise Skipped(f"{row['run_path']} has no {HYDRA_CONFIG} (the run's configuration)")
    return OmegaConf.load(path)


def validation_data(row: pd.Series) -> tuple[SegmentationData, np.ndarray]:
    """The run's dataset, read as training read it, and fold 0's validation image indices (the
    cases the run's splits.json names)."""
    cfg = run_config(row)
    try:
        recorded = row.get(DATA_FINGERPRINT)
        if isinstance(recorded, str) and dataset_fingerprint(cfg.dataset) != recorded:
            raise Skipped("its data files changed since the run (data fingerprint differs)")
        data = load_dataset(cfg)
    except InstantiationException as error:
        raise Skipped(f"its data cannot be read here ({error.__cause__ or error})") from None
    except (ConfigError, OSError) as error:
        raise Skipped(f"its data cannot be read here ({error})") from None
    trainer = cfg.trainer
    run = RunFolder(Path(row["run_path"]))
    return data, run.held_out(FOLD, data.cases, trainer.folds, trainer.seed, trainer.shuffle_folds)


def raw_rows(raw: Raw, indices: np.ndarray) -> np.ndarray:
    """Rows ``indices`` of a dataset's raw images or masks, as stored (numpy)."""
    if isinstance(raw, torch.Tensor):
        return raw[torch.from_numpy(indices)].cpu().numpy()
    out = np.empty((len(indices), *raw.shape[1:]), dtype=raw.dtype)
    raw.read_into(np.asarray(indices, dtype=np.int64), out)
    return out


def masks_of(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Foreground where the clipped probability >= the threshold, compared in float32."""
    return np.clip(probability, *CLIP) >= np.float32(threshold)


def dice(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image Dice of (N, H, W) masks; 1 where both are empty."""
    overlap = np.count_nonzero(mask & truth, axis=(-2, -1))
    total = np.count_nonzero(mask, axis=(-2, -1)) + np.count_nonzero(truth, axis=(-2, -1))
    return np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)


def _batch_size(ensemble: Ensemble) -> int:
    return int(ensemble.card.get("eval_batch_size", 16))


def scan(
    data: SegmentationData,
    val: np.ndarray,
    ensembles: Sequence[Ensemble],
    thresholds: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Per validation image: the pixels where the two masks differ, and both masks' Dice
    (2, N); a chunk of the evaluation's batches at a time, so nothing image-sized is kept."""
    step = _batch_size(ensembles[0]) * max(1, 64 // _batch_size(ensembles[0]))
    counts, dices = [], []
    for start in range(0, len(val), step):
        part = val[start : start + step]
        pixels = raw_rows(data.images, part)
        truth = raw_rows(data.masks, part)[:, 0] > 0
        masks = [
            masks_of(e.probabilities(pixels, _batch_size(e)), t)
            for e, t in zip(ensembles, thresholds, strict=True)
        ]
        counts.append(np.count_nonzero(masks[0] != masks[1], axis=(-2, -1)))
        dices.append(np.stack([dice(m, truth) for m in masks]))
    return np.concatenate(counts), np.concatenate(dices, axis=1)


def pick(disagreement: np.ndarray, mean_dice: np.ndarray) -> list[int]:
    """Positions: the 3 with the most disagreement (ties: the first), then the median Dice of
    the others (the lower median)."""
    order = np.argsort(-disagreement, kind="stable")
    chosen = [int(i) for i in order[:DISAGREEING]]
    rest = np.array([i for i in range(len(disagreement)) if i not in chosen], dtype=np.int64)
    if len(rest):
        ranked = rest[np.argsort(mean_dice[rest], kind="stable")]
        chosen.append(int(ranked[(len(ranked) - 1) // 2]))
    return chosen


def probability_at(
    ensemble: Ensemble, data: SegmentationData, val: np.ndarray, position: int
) -> np.ndarray:
    """Image ``position``'s probabilities, computed in the very batch the evaluation used."""
    size = _batch_size(ensemble)
    start = position // size * size
    batch = ensemble.probabilities(raw_rows(data.images, val[start : start + size]), size)
    return batch[position - start]


def displayed(pixels: np.ndarray) -> np.ndarray:
    """(C, H, W) stored pixels -> (H, W, 3) or (H, W) in [0, 1] (first channel unless 3)."""
    image = pixels.astype(np.float32)
    if pixels.dtype == np.uint8:
        image = image / 255
    else:
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return np.moveaxis(image, 0, -1) if image.shape[0] == 3 else image[0]


def build_block(rows: Pair, device: torch.device) -> Block:
    """Load both fold models and the validation images; predict; keep the chosen images."""
    data, val = validation_data(rows[0])
    ensembles = [load_ensemble(Path(r["run_path"]), FOLD, device) for r in rows]
    a, b = rows
    thresholds = (float(a[schema.BEST_THRESHOLD]), float(b[schema.BEST_THRESHOLD]))
    counts, dices = scan(data, val, ensembles, thresholds)
    activations = (str(a["activation"]), str(b["activation"]))
    block = Block(str(a["dataset"]), str(a["loss"]), int(a["seed"]), activations, thresholds)
    for position in pick(counts, dices.mean(axis=0)):
        index = val[position : position + 1]
        block.names.append(str(data.names[int(index[0])]))
        block.images.append(displayed(raw_rows(data.images, index)[0]))
        block.truths.append(raw_rows(data.masks, index)[0, 0] > 0)
        first, second = (probability_at(e, data, val, position) for e in ensembles)
        block.probabilities.append((first, second))
        block.disagreements.append(int(counts[position]))
    return block


def disagreement_rgb(
    image: np.ndarray, masks: tuple[np.ndarray, np.ndarray], colors: tuple[str, str]
) -> np.ndarray:
    """The image dimmed and grey, foreground of both masks light grey, a-only pixels in a's
    colour and b-only pixels in b's."""
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    rgb = np.repeat((BACKGROUND_SHADE * gray)[..., None], 3, axis=-1)
    a, b = masks
    rgb[a & b] = AGREED
    rgb[a & ~b] = to_rgb(colors[0])
    rgb[b & ~a] = to_rgb(colors[1])
    return rgb


def draw_row(axes: Sequence[Axes], block: Block, i: int) -> None:
    """Row ``i`` of ``block``: the image, truth, each probability map and mask, disagreement."""
    truth = block.truths[i]
    colors = tuple(activation_color(name) for name in block.activations)
    masks = tuple(
        masks_of(p, t) for p, t in zip(block.probabilities[i], block.thresholds, strict=True)
    )
    gray = {"cmap": "gray", "vmin": 0, "vmax": 1, "interpolation": "nearest"}
    axes[0].imshow(block.images[i], **gray)
    axes[0].set_title(f"{block.dataset} · {block.loss}\n{block.names[i]}")
    axes[1].imshow(truth, **gray)
    axes[1].set_title("truth")
    for k, name in enumerate(block.activations):
        axes[2 + 2 * k].imshow(
            block.probabilities[i][k], cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
        )
        axes[2 + 2 * k].set_title(f"{name}: probability")
        cmap = ListedColormap(["black", colors[k]])
        axes[3 + 2 * k].imshow(masks[k], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        score = float(dice(masks[k][None], truth[None])[0])
        axes[3 + 2 * k].set_title(f"{name} ≥ {block.thresholds[k]:g}\nDice {score:.3f}")
    axes[6].imshow(disagreement_rgb(block.images[i], masks, colors), interpolation="nearest")
    axes[6].set_title(f"disagreement\n{block.disagreements[i]} px")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.title.set_fontsize("x-small")


def overlay_figure(blocks: Sequence[Block]) -> Figure:
    """A row per image shown, a block of rows per dataset x loss, COLUMNS columns."""
    n_rows = sum(len(block.names) for block in blocks)
    size = (COLUMNS * PANEL_INCHES + 0.8, n_rows * PANEL_INCHES + LEGEND_INCHES)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(n_rows, COLUMNS, squeeze=False)
    rows = iter(axes)
    for block in blocks:
        for i in range(len(block.names)):
            draw_row(next(rows), block, i)
    fig.colorbar(axes[0, 2].images[0], ax=axes.ravel().tolist(), shrink=0.5, label="probability")
    a, b = blocks[0].activations
    handles = [
        Patch(color=activation_color(a), label=f"{a} only"),
        Patch(color=activation_color(b), label=f"{b} only"),
        Patch(color=AGREED, label="both"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    return fig


def _sentence(blocks: Sequence[Block]) -> str:
    a, b = blocks[0].activations
    where = "; ".join(
        f"{x.dataset} · {x.loss}: seed {x.seed}, {a} ≥ {x.thresholds[0]:g}, "
        f"{b} ≥ {x.thresholds[1]:g}"
        for x in blocks
    )
    return (
        f"Fold {FOLD}'s models of {a} and {b} on fold {FOLD}'s validation images, each mask "
        f"at its fold's reported threshold ({where}): per dataset and loss, the {DISAGREEING} "
        "images where the two masks disagree most, then the one with the median Dice of the "
        f"rest; the last column shows pixels only {a} marks in its colour and those only {b} "
        "marks in its."
    )


def overlay_sections(used: pd.DataFrame, pairs: Sequence[tuple[str, str]], out: Path) -> list[str]:
    """The "Overlays" section and ``overlays.png``; [] where no dataset has saved models of
    both activations of the first pair."""
    if not pairs or used.empty or "run_path" not in used.columns:
        return []
    a, b = pairs[0]
    chosen = chosen_runs(used, a, b)
    if not chosen:
        return []
    device = resolve_device("auto")
    blocks, notes = [], []
    for (dataset, loss), rows in sorted(chosen.items()):
        try:
            blocks.append(build_block(rows, device))
        except (Skipped, ModelError) as error:
            notes.append(f"Overlays of {dataset} · {loss} skipped: {error}.")
    lines = ["## Overlays", ""]
    if blocks:
        write_figure(overlay_figure(blocks), out / FIGURE, DPI)
        lines += [_sentence(blocks), "", f"![{FIGURE}]({FIGURE})", ""]
    for note in notes:
        lines += [note, ""]
    return lines
