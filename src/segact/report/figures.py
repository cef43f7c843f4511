"""The report's figures section: each figure drawn (``plots``), embedded in report.md with a
caption under it that says what is plotted, what the band is and over how many folds (n).

matplotlib is imported only when a report is drawn (``--no-figures`` never imports it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segact.runs import schema

DICE_VS_THRESHOLD = "dice_vs_threshold.png"
RELIABILITY = "reliability.png"
ACTIVATIONS = "activations.png"
DICE_VS_EPOCH = "dice_vs_epoch.png"
GRAD_NORM_VS_EPOCH = "grad_norm_vs_epoch.png"
PANELS = "a panel per dataset and loss, a colour per activation"
CUT = (
    "a curve is drawn only at epochs where at least half of its folds still train (o: cut "
    "there); lower rows: the folds still training"
)
SELECTED = schema.BEST_THRESHOLD


def _n(frame: pd.DataFrame, by: Sequence[str]) -> str:
    from segact.report import plots

    return plots.n_text(plots.fold_counts(frame, by))


def threshold_figures(
    used: pd.DataFrame,
    thresholds: pd.DataFrame,
    panel_keys: Sequence[str],
    style_keys: Sequence[str],
    out: Path,
) -> list[tuple[str, str]]:
    """Dice against the threshold (with each fold's selected threshold) and the reliability
    diagram of the folds used: (file, caption) of each."""
    from segact.report import plots

    if thresholds.empty:
        return []
    selected = [SELECTED] if SELECTED in used.columns else []
    rows = thresholds.drop(columns=selected, errors="ignore")
    rows = rows.merge(used[["run_path", "fold", *selected]], on=["run_path", "fold"])
    plots.dice_vs_threshold(rows, panel_keys, out / DICE_VS_THRESHOLD, style_keys)
    plots.reliability(rows, panel_keys, out / RELIABILITY, style_keys)
    n = _n(rows, [*panel_keys, "activation", *style_keys])
    return [
        (
            DICE_VS_THRESHOLD,
            "Dice of each validation fold (its pixels pooled) at every threshold of the grid: "
            f"mean over folds, band ± 1 std over folds ({n}); {PANELS}. Dotted line: t = 0.5; "
            "diamond: the selected threshold (mean over the folds of each fold's best "
            "threshold, the tables' threshold column).",
        ),
        (
            RELIABILITY,
            "Calibration: per bin of predicted probability (between neighbouring thresholds), "
            f"the share of its pixels that are foreground, pixels pooled over the folds ({n}); "
            f"{PANELS}; dashed: perfect calibration; lower rows: pixels per bin (log scale).",
        ),
    ]


def epoch_figures(
    epochs: pd.DataFrame, panel_keys: Sequence[str], style_keys: Sequence[str], out: Path
) -> list[tuple[str, str]]:
    """The validation Dice and the gradient norm against the epoch: (file, caption) of each."""
    from segact.report import plots

    if epochs.empty:
        return []
    n = _n(epochs, [*panel_keys, "activation", *style_keys])
    figures = (
        (
            schema.VAL_THRESHOLD_AVERAGED_DICE,
            "validation threshold-averaged Dice",
            DICE_VS_EPOCH,
            False,
            "Validation threshold-averaged Dice (Dice averaged over the threshold grid, the "
            f"selection metric) after each epoch: mean over folds, band ± 1 std over folds ({n}); ",
        ),
        (
            schema.GRAD_NORM,
            "gradient norm (first batch)",
            GRAD_NORM_VS_EPOCH,
            True,
            "Gradient norm of each epoch's first training batch, log axis: geometric mean over "
            f"folds, band ×/÷ exp(std of the log) over folds ({n}); zeros drawn at a floor "
            "the panel names; ",
        ),
    )
    captions = []
    for column, label, name, log, words in figures:
        plots.metric_vs_epoch(epochs, panel_keys, style_keys, column, label, out / name, log)
        captions.append((name, f"{words}{PANELS}; {CUT}."))
    return captions


def figure_sections(
    used: pd.DataFrame,
    thresholds: pd.DataFrame,
    epochs: pd.DataFrame,
    keys: Sequence[str],
    out: Path,
) -> list[str]:
    """The "Figures" section: each figure and its caption."""
    from segact.report import plots

    # Small multiples: a panel per dataset and loss, a colour per activation, a line style per
    # combination of the other row keys (binarize, head, ...).
    panel_keys = [k for k in ("dataset", "loss") if k in used.columns]
    style_keys = [k for k in keys if k not in (*panel_keys, "activation")]
    drawn = threshold_figures(used, thresholds, panel_keys, style_keys, out)
    plots.activation_functions(sorted(used["activation"].unique()), out / ACTIVATIONS)
    drawn.append(
        (
            ACTIVATIONS,
            "Each activation f of these runs against the logit z, and its derivative "
            "(the 2-channel head's softmax as sigmoid(z1 - z0), dashed); functions, no data.",
        )
    )
    drawn += epoch_figures(epochs, panel_keys, style_keys, out)
    lines = ["## Figures", ""]
    for name, caption in drawn:
        lines += [f"![{name}]({name})", "", f"*{caption}*", ""]
    return lines
