"""PNG figures of a sweep: Dice vs threshold, reliability diagrams, the activation functions.

Built with matplotlib's object API (``Figure``, no pyplot): no GUI backend and no global state,
so the report runs headless. The plots read the tidy threshold table (one row per run x fold x
threshold); the reliability diagram needs no extra data: between two neighbouring thresholds
t_k <= p < t_k+1 the pixel count is the drop of TP+FP and the foreground count the drop of TP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from segact.io import write_figure
from segact.nn import activations

PANEL_INCHES = 3.6
DPI = 120


def _panels(frame: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """One panel per combination of ``keys`` (dataset, loss, ...), titled by its values."""
    if not keys:
        return [("", frame)]
    return [
        (" · ".join(map(str, key)), group)
        for key, group in frame.groupby(list(keys), sort=True, dropna=False)
    ]


def _figure(n_panels: int, columns: int = 3) -> tuple[Figure, np.ndarray]:
    columns = min(n_panels, columns)
    rows = -(-n_panels // columns)
    fig = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flat
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _save(fig: Figure, path: Path) -> Figure:
    write_figure(fig, path, DPI)
    return fig


def dice_curves(thresholds: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean and std over folds (and seeds) of the pooled Dice per ``by`` group and threshold."""
    groups = thresholds.groupby([*by, "threshold"], sort=True, dropna=False)["dice"]
    return groups.agg(["mean", "std"]).reset_index()


def dice_vs_threshold(thresholds: pd.DataFrame, panel_keys: Sequence[str], path: Path) -> Figure:
    """Mean pooled Dice over folds (± std band) against the threshold, a line per activation."""
    panels = _panels(dice_curves(thresholds, [*panel_keys, "activation"]), panel_keys)
    fig, axes = _figure(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=False):
        for activation, curve in frame.groupby("activation", sort=True):
            ax.plot(curve["threshold"], curve["mean"], marker=".", label=activation)
            low, high = curve["mean"] - curve["std"], curve["mean"] + curve["std"]
            ax.fill_between(curve["threshold"], low, high, alpha=0.2)
        ax.set(title=title, xlabel="threshold", ylabel="Dice", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize="small")
    return _save(fig, path)


def reliability_bins(thresholds: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Pixels and foreground pixels per probability bin [t_k, t_k+1), summed over ``by`` groups."""
    per_run = thresholds.sort_values([*by, "run_path", "fold", "threshold"]).copy()
    per_run["predicted"] = per_run["tp"] + per_run["fp"]
    runs = per_run.groupby([*by, "run_path", "fold"], sort=False, dropna=False)
    # Pixels with t_k <= p < t_k+1: the count at t_k minus the count at t_k+1 (0 after the last).
    for column, count in (("pixels", "predicted"), ("foreground", "tp")):
        per_run[column] = per_run[count] - runs[count].shift(-1, fill_value=0)
    upper = runs["threshold"].shift(-1, fill_value=1.0)
    per_run["confidence"] = np.where(
        upper > per_run["threshold"], (per_run["threshold"] + upper) / 2, per_run["threshold"]
    )
    bins = per_run.groupby([*by, "confidence"], as_index=False, dropna=False)[
        ["pixels", "foreground"]
    ].sum()
    bins = bins[bins["pixels"] > 0]
    bins["frequency"] = bins["foreground"] / bins["pixels"]
    return bins


def reliability(thresholds: pd.DataFrame, panel_keys: Sequence[str], path: Path) -> Figure:
    """Observed foreground frequency per probability bin; the diagonal is perfect calibration."""
    bins = reliability_bins(thresholds, [*panel_keys, "activation"])
    panels = _panels(bins, panel_keys)
    fig, axes = _figure(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=False):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for activation, curve in frame.groupby("activation"):
            ax.plot(curve["confidence"], curve["frequency"], marker="o", label=activation)
        ax.set(
            title=title,
            xlabel="predicted probability",
            ylabel="foreground frequency",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(fontsize="small")
    return _save(fig, path)


def activation_functions(names: Sequence[str], path: Path, limit: float = 6.0) -> Figure:
    """Each registered activation f and the slope of its curve f' on [-limit, limit]; the
    2-channel head's softmax as sigmoid(z1 - z0), the same curve in the logit difference.

    The curve is one sample of logits (``linear`` scales each sample's min and max to [0, 1]).
    The slope is taken from the plotted curve (np.gradient), not autograd: for ``linear``
    autograd of a sum would mix in every point's min and max.
    """
    known = [n for n in names if n in activations.REGISTRY or n == activations.SOFTMAX]
    x = torch.linspace(-limit, limit, 601, dtype=torch.float64)
    fig, (ax_f, ax_df) = _figure(2)
    for name in known or activations.names():
        label, curve = name, name
        if name == activations.SOFTMAX:
            label, curve = "softmax (2 channels), z = z1 - z0", "sigmoid"
        p = activations.get(curve)(x[None])[0].numpy()
        ax_f.plot(x, p, label=label)
        ax_df.plot(x, np.gradient(p, x.numpy()), label=label)
    ax_f.set(title="activation f(z)", xlabel="logit z", ylabel="probability")
    ax_df.set(title="derivative f'(z)", xlabel="logit z", ylabel="df/dz")
    ax_f.legend(fontsize="small")
    return _save(fig, path)


def epoch_curves(epochs: pd.DataFrame, by: Sequence[str], column: str) -> pd.DataFrame:
    """Mean and std over folds (and seeds) of an epochs.csv ``column`` per ``by`` group and
    epoch; a fold that stopped early leaves the mean of the later epochs."""
    groups = epochs.groupby([*by, "epoch"], sort=True, dropna=False)[column]
    return groups.agg(["mean", "std"]).reset_index()


def metric_vs_epoch(
    epochs: pd.DataFrame, line_keys: Sequence[str], column: str, label: str, path: Path
) -> Figure:
    """One panel per dataset: ``column`` (mean ± std over folds) against the epoch, a line per
    combination of ``line_keys`` (e.g. loss and binarize mode). A gradient norm that is exactly
    zero is drawn on a symlog axis, so it stays visible as a line at 0."""
    curves = epoch_curves(epochs, ["dataset", *line_keys], column)
    panels = _panels(curves, ["dataset"])
    fig, axes = _figure(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=False):
        for key, line in frame.groupby(list(line_keys), sort=True, dropna=False):
            name = " · ".join(map(str, key if isinstance(key, tuple) else (key,)))
            ax.plot(line["epoch"], line["mean"], label=name)
            ax.fill_between(
                line["epoch"],
                line["mean"] - line["std"].fillna(0),
                line["mean"] + line["std"].fillna(0),
                alpha=0.2,
            )
        if column == "grad_norm":
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.set(title=title, xlabel="epoch", ylabel=label)
        ax.legend(fontsize="small")
    return _save(fig, path)
