"""PNG figures of a sweep: Dice vs threshold, reliability diagrams, the activation functions, the
per-epoch curves and forest plots.

Built with matplotlib's object API (``Figure``, no pyplot): no GUI backend and no global state,
so the report runs headless. The plots read the tidy threshold table (one row per run x fold x
threshold); the reliability diagram needs no extra data: between two neighbouring thresholds
t_k <= p < t_k+1 the pixel count is the drop of TP+FP and the foreground count the drop of TP.

A grid is drawn as small multiples: a panel per dataset and loss, a line per activation in a
panel. An activation has one colour in every panel of every figure (``activation_color``); any
further key that tells the lines of a panel apart (``binarize``, ``head``...) gets a line style.
Each figure has one legend, outside its axes.
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory

from segact.io import write_figure
from segact.nn import activations
from segact.report.tables import loss_label
from segact.runs import schema

PANEL_INCHES = 3.6
COUNT_HEIGHT = 0.3
"""Height of the count row under a panel (folds alive, pixels per bin), as a share of a panel."""
LEGEND_INCHES = 2.0
"""Width added right of the panels for the figure's legend."""
DPI = 120
ACTIVATION_COLORS: dict[str, str] = {
    "sigmoid": "#1f77b4",
    "arctan": "#d62728",
    "normal_cdf": "#2ca02c",
    "softsign": "#9467bd",
    "inv_sqrt": "#ff7f0e",
    "hardtanh": "#8c564b",
    "linear": "#e377c2",
    "softmax": "#17becf",
}
"""One colour per activation, the same in every figure; the order is the legend's."""
FALLBACK_COLORS = ("#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173", "#3182bd", "#000000")
"""Colours for an activation not named above, picked by a hash of its name."""
LINE_STYLES: tuple[str | tuple, ...] = (
    "-",
    "--",
    ":",
    "-.",
    (0, (5, 1, 1, 1, 1, 1)),
    (0, (8, 2)),
    (0, (1, 3)),
    (0, (3, 2, 1, 2, 1, 2)),
)
ZERO_FLOOR = 1e-12
"""Where a zero goes on a log axis when nothing in the figure is positive."""
POOLED_LABELS = {
    "fixed": "fixed effect",
    "random_dl": "random effects (DL)",
    "random_hksj": "random effects (HKSJ)",
    "equal": "equal weights",
}
POOLED_COLORS = {"fixed": "#555555", "random_dl": "#1f77b4", "random_hksj": "#9467bd"}
CUT_HANDLE = Line2D(
    [], [], color="grey", marker="o", markerfacecolor="white", linestyle="", label="curve cut"
)


def activation_color(name: object) -> str:
    """The colour of an activation: fixed for the known ones, from a hash of the name else."""
    name = str(name)
    if name in ACTIVATION_COLORS:
        return ACTIVATION_COLORS[name]
    return FALLBACK_COLORS[zlib.crc32(name.encode()) % len(FALLBACK_COLORS)]


def activation_order(names: Iterable[object]) -> list[str]:
    """The activations in legend order: the known ones as in ACTIVATION_COLORS, then by name."""
    names = {str(n) for n in names}
    known = [n for n in ACTIVATION_COLORS if n in names]
    return known + sorted(names - set(known))


def _present(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k in frame.columns]


def _varying(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The ``keys`` of ``frame`` with more than one value: those that tell lines apart."""
    return [k for k in _present(frame, keys) if frame[k].nunique(dropna=False) > 1]


def _as_tuple(key: object) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _key_part(key: str, value: object) -> str:
    """``dataset`` by its value, ``loss`` as what it is ("Dice loss"), another key as key=value."""
    if key == "dataset":
        return str(value)
    return loss_label(value) if key == "loss" else f"{key}={value}"


def _key_label(keys: Sequence[str], values: Sequence[object]) -> str:
    """A panel's or line's keys: "isbi2012 · Dice loss · binarize=hard"."""
    return " · ".join(_key_part(k, v) for k, v in zip(keys, values, strict=True))


def fold_counts(frame: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """Folds (run x fold) behind each ``by`` group of a tidy frame: the n of its curve."""
    ids = [c for c in ("run_path", "seed", "fold") if c in frame.columns and c not in by]
    if frame.empty or not ids:
        return pd.Series(dtype="int64")
    folds = frame[[*by, *ids]].drop_duplicates()
    return folds.groupby(list(by), dropna=False).size() if by else pd.Series([len(folds)])


def n_text(counts: pd.Series) -> str:
    """ "n = 15 folds per curve" (or "n = 10–15 ...", where the curves differ)."""
    if counts.empty:
        return "n unknown"
    low, high = int(counts.min()), int(counts.max())
    return f"n = {low}{'' if low == high else f'–{high}'} folds per curve"


def band_handle(words: str = "band: ± 1 std over folds") -> Patch:
    return Patch(color="grey", alpha=0.25, linewidth=0, label=words)


def readable_log_ticks(ax: Axes) -> None:
    """Label a log y axis at 1, 2, 5 x each power of ten (1, 1.5, 2, 3, 5, 7 within one
    decade; powers of ten only beyond three), written as plain numbers (0.05, not 5e-2)."""
    low, high = ax.get_ylim()
    decades = np.log10(high / low) if low > 0 and high > low else 0.0
    subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1 else (1.0, 1.5, 2, 3, 5, 7)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def line_styles(frame: pd.DataFrame, style_keys: Sequence[str]) -> dict[tuple, str | tuple]:
    """A line style per combination of ``style_keys`` in ``frame`` (one, solid, if none)."""
    if not style_keys:
        return {(): "-"}
    combos = sorted(
        {_as_tuple(k) for k, _ in frame.groupby(list(style_keys), dropna=False)},
        key=lambda combo: tuple(map(str, combo)),
    )
    return {combo: LINE_STYLES[i % len(LINE_STYLES)] for i, combo in enumerate(combos)}


def _lines(
    frame: pd.DataFrame, style_keys: Sequence[str]
) -> Iterator[tuple[str, tuple, str, pd.DataFrame]]:
    """(activation, style key, label, rows) of each line of a panel, in legend order."""
    groups = {
        _as_tuple(key): group
        for key, group in frame.groupby(["activation", *style_keys], sort=False, dropna=False)
    }
    rank = {name: i for i, name in enumerate(activation_order(k[0] for k in groups))}
    for key in sorted(groups, key=lambda k: (rank[str(k[0])], tuple(map(str, k[1:])))):
        label = str(key[0])
        if style_keys:
            label = f"{label} · {_key_label(style_keys, key[1:])}"
        yield str(key[0]), key[1:], label, groups[key]


def _panels(
    frame: pd.DataFrame, keys: Sequence[str]
) -> tuple[list[tuple[str, pd.DataFrame]], list[tuple[int, int]]]:
    """One panel per combination of ``keys`` (dataset, loss), titled by its values, and each
    panel's (row, column): a dataset per row and a loss per column where there are up to four
    losses, else three panels a row."""
    if not keys:
        return [("", frame)], [(0, 0)]
    groups = list(frame.groupby(list(keys), sort=True, dropna=False))
    panels = [(_key_label(keys, _as_tuple(k)), group) for k, group in groups]
    last = sorted({str(_as_tuple(k)[-1]) for k, _ in groups})
    if len(keys) < 2 or not 2 <= len(last) <= 4:
        return panels, [divmod(i, min(len(panels), 3)) for i in range(len(panels))]
    rows = list(dict.fromkeys(_as_tuple(k)[:-1] for k, _ in groups))
    places = [(rows.index(_as_tuple(k)[:-1]), last.index(str(_as_tuple(k)[-1]))) for k, _ in groups]
    return panels, places


def _figure(
    places: Sequence[tuple[int, int]], counts: bool = False
) -> tuple[Figure, list[Axes], list[Axes | None]]:
    """A figure with an axes at each (row, column) of ``places``, a panel of PANEL_INCHES, and
    with ``counts`` a thin count row under each panel sharing its x axis."""
    rows = max(r for r, _ in places) + 1
    columns = max(c for _, c in places) + 1
    share = COUNT_HEIGHT if counts else 0.0
    fig = Figure(
        figsize=(PANEL_INCHES * columns + LEGEND_INCHES, PANEL_INCHES * rows * (1 + share)),
        layout="constrained",
    )
    ratios = [1.0, share] * rows if counts else [1.0] * rows
    grid = fig.add_gridspec(len(ratios), columns, height_ratios=ratios)
    axes: list[Axes] = []
    count_axes: list[Axes | None] = []
    step = 2 if counts else 1
    for row, column in places:
        ax = fig.add_subplot(grid[step * row, column])
        axes.append(ax)
        count_axes.append(None)
        if counts:
            count_axes[-1] = fig.add_subplot(grid[step * row + 1, column], sharex=ax)
            ax.tick_params(labelbottom=False)
    return fig, axes, count_axes


def _flat(n_panels: int, columns: int = 3) -> list[tuple[int, int]]:
    return [divmod(i, min(n_panels, columns)) for i in range(n_panels)]


def _legend(
    fig: Figure,
    names: Iterable[object],
    styles: dict[tuple, str | tuple],
    style_keys: Sequence[str],
    extra: Sequence[object] = (),
) -> None:
    """The figure's one legend, right of the panels: a colour per activation, a line style per
    combination of ``style_keys`` (where there are several), then ``extra`` handles."""
    handles: list = [Line2D([], [], color=activation_color(n), label=n) for n in names]
    title = "colour: activation"
    if len(styles) > 1:
        title += f"\nline style: {', '.join(style_keys)}"
        handles += [
            Line2D([], [], color="black", linestyle=s, label=_key_label(style_keys, k))
            for k, s in styles.items()
        ]
    fig.legend(
        handles=[*handles, *extra],
        loc="outside right upper",
        fontsize="small",
        title=title,
        title_fontsize="small",
    )


def _subtitle(fig: Figure, text: str) -> None:
    """The figure's rule above its panels, left-aligned and wrapped short of the legend."""
    width = max(30, int(14 * (fig.get_figwidth() - LEGEND_INCHES)))
    fig.suptitle(textwrap.fill(text, width=width), x=0.01, ha="left", fontsize="small")


def _save(fig: Figure, path: Path) -> Figure:
    write_figure(fig, path, DPI)
    return fig


def dice_curves(thresholds: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean and std over folds (and seeds) of the pooled Dice per ``by`` group and threshold."""
    groups = thresholds.groupby([*by, "threshold"], sort=True, dropna=False)["dice"]
    return groups.agg(["mean", "std"]).reset_index()


SELECTED = schema.BEST_THRESHOLD
"""A threshold row's copy of its fold's selected (best) threshold, where the report adds it."""
THRESHOLD_MARKS = (
    Line2D([], [], color="grey", linestyle=":", linewidth=1, label="t = 0.5"),
    Line2D(
        [], [], color="grey", marker="D", markeredgecolor="white", linestyle="",
        label="selected threshold\n(mean over folds)",
    ),
)  # fmt: skip


def selected_threshold(curve: pd.DataFrame, rows: pd.DataFrame) -> float:
    """Where a Dice curve's folds put their threshold: the mean of their selected thresholds
    (``best_threshold``, the table's threshold column), else the curve's own best."""
    if SELECTED in rows.columns and rows[SELECTED].notna().any():
        per_fold = rows.drop_duplicates([c for c in ("run_path", "fold") if c in rows.columns])
        return float(per_fold[SELECTED].mean())
    return float(curve.loc[curve["mean"].idxmax(), "threshold"])


def _threshold_panel(
    ax: Axes,
    frame: pd.DataFrame,
    rows: pd.DataFrame,
    styles: dict[tuple, str | tuple],
    style_keys: Sequence[str],
) -> None:
    """One panel of Dice against the threshold: each curve with its ± std band and a diamond
    at its selected threshold, the line t = 0.5 and the n of the curves."""
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1, gid="threshold_0.5")
    for activation, style, label, curve in _lines(frame, style_keys):
        color, std = activation_color(activation), curve["std"].fillna(0)
        look = {"color": color, "linestyle": styles[style]}
        ax.plot(curve["threshold"], curve["mean"], marker=".", label=label, **look)
        low, high = (curve["mean"] - std).clip(0, 1), (curve["mean"] + std).clip(0, 1)
        ax.fill_between(curve["threshold"], low, high, color=color, alpha=0.15, linewidth=0)
        mine = rows.merge(curve[["activation", *style_keys]].drop_duplicates())
        x = selected_threshold(curve, mine)
        y = np.interp(x, curve["threshold"], curve["mean"])
        ax.plot([x], [y], marker="D", color=color, markeredgecolor="white", linestyle="",
                gid="selected_threshold", zorder=3)  # fmt: skip
    n = n_text(fold_counts(rows, ["activation", *style_keys]))
    ax.set(
        xlabel=f"threshold ({n})", ylabel="Dice (fold's pixels pooled)", xlim=(0, 1), ylim=(0, 1)
    )


def dice_vs_threshold(
    thresholds: pd.DataFrame, panel_keys: Sequence[str], path: Path, style_keys: Sequence[str] = ()
) -> Figure:
    """Mean pooled Dice over folds (± std band) against the threshold: a panel per combination
    of ``panel_keys``, a line per activation (coloured) and ``style_keys`` (line style); the
    line t = 0.5 and, on each curve, its selected threshold (``selected_threshold``)."""
    panel_keys, style_keys = _present(thresholds, panel_keys), _varying(thresholds, style_keys)
    curves = dice_curves(thresholds, [*panel_keys, "activation", *style_keys])
    styles = line_styles(curves, style_keys)
    panels, places = _panels(curves, panel_keys)
    row_panels, _ = _panels(thresholds, panel_keys)
    fig, axes, _ = _figure(places)
    for ax, (title, frame), (_, rows) in zip(axes, panels, row_panels, strict=True):
        _threshold_panel(ax, frame, rows, styles, style_keys)
        ax.set_title(title)
    extra = [band_handle(), *THRESHOLD_MARKS]
    _legend(fig, activation_order(curves["activation"]), styles, style_keys, extra)
    _subtitle(fig, "Dice of each validation fold (pixels pooled) against the threshold")
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


def reliability(
    thresholds: pd.DataFrame, panel_keys: Sequence[str], path: Path, style_keys: Sequence[str] = ()
) -> Figure:
    """Observed foreground frequency per probability bin (the diagonal is perfect calibration),
    and under each panel the pixels per bin on a log scale."""
    panel_keys, style_keys = _present(thresholds, panel_keys), _varying(thresholds, style_keys)
    bins = reliability_bins(thresholds, [*panel_keys, "activation", *style_keys])
    styles = line_styles(bins, style_keys)
    panels, places = _panels(bins, panel_keys)
    row_panels, _ = _panels(thresholds, panel_keys)
    fig, axes, counts = _figure(places, counts=True)
    for ax, count_ax, (title, frame), (_, rows) in zip(
        axes, counts, panels, row_panels, strict=True
    ):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        n = n_text(fold_counts(rows, ["activation", *style_keys]))
        for activation, style, label, curve in _lines(frame, style_keys):
            look = {"color": activation_color(activation), "linestyle": styles[style]}
            ax.plot(
                curve["confidence"],
                curve["frequency"],
                marker="o",
                markersize=3,
                label=label,
                **look,
            )
            count_ax.plot(
                curve["confidence"], curve["pixels"], drawstyle="steps-mid", linewidth=1, **look
            )
        ax.set(title=title, ylabel="foreground frequency", xlim=(0, 1), ylim=(0, 1))
        count_ax.set_yscale("log")
        count_ax.set(xlabel=f"predicted probability ({n})", ylabel="pixels")
    diagonal = Line2D([], [], color="grey", linestyle="--", label="perfect calibration")
    _legend(fig, activation_order(bins["activation"]), styles, style_keys, [diagonal])
    _subtitle(
        fig,
        "foreground frequency per bin of predicted probability, pixels pooled over the "
        "folds; lower rows: pixels per bin (log scale)",
    )
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
    fig, (ax_f, ax_df), _ = _figure(_flat(2))
    handles = []
    for name in known or activations.names():
        label, curve = name, name
        if name == activations.SOFTMAX:
            label, curve = "softmax (2 channels),\nz = z1 - z0", "sigmoid"
        p = activations.get(curve)(x[None])[0].numpy()
        look = {"color": activation_color(name), "linestyle": "--" if curve != name else "-"}
        (line,) = ax_f.plot(x, p, label=label, **look)  # softmax dashed: it is sigmoid's curve
        ax_df.plot(x, np.gradient(p, x.numpy()), label=label, **look)
        handles.append(line)
    ax_f.set(title="activation f(z)", xlabel="logit z", ylabel="probability")
    ax_df.set(title="derivative f'(z)", xlabel="logit z", ylabel="df/dz")
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return _save(fig, path)


def log_floor(values: pd.Series) -> float:
    """Where zeros go on a log axis: a decade below the smallest positive value, rounded down
    to a power of ten (ZERO_FLOOR where nothing is positive)."""
    positive = values[values > 0]
    if positive.empty:
        return ZERO_FLOOR
    return float(10.0 ** (np.floor(np.log10(positive.min())) - 1))


def epoch_curves(
    epochs: pd.DataFrame,
    by: Sequence[str],
    column: str,
    log: bool = False,
    floor: float = ZERO_FLOOR,
) -> pd.DataFrame:
    """Per ``by`` group and epoch, over its folds (and seeds, runs): ``mean`` with a ``low`` to
    ``high`` band (± std), or with ``log`` the geometric mean ×/÷ exp(std of log), values <= 0
    taken as ``floor``; ``alive`` (folds that reached the epoch), ``folds`` (of the group),
    ``zeros`` (folds at <= 0 there) and ``kept``: at least half of the folds alive. Mean and band
    are NaN where not kept (early stopping: the mean of the survivors is not the group's)."""
    by = list(by)
    data = epochs[[*by, "epoch", column]].reset_index(drop=True)
    ids = [c for c in ("run_path", "seed", "fold") if c in epochs.columns and c not in by]
    fold_id = epochs.groupby(ids, dropna=False, sort=False).ngroup().to_numpy() if ids else 0
    data = data.assign(_fold=fold_id, _zero=data[column] <= 0)
    if log:
        data[column] = np.log(data[column].where(~data["_zero"], floor))
    n_folds = data.groupby(by, dropna=False)["_fold"].transform("nunique") if by else None
    data["_n"] = n_folds if by else data["_fold"].nunique()
    curves = (
        data.groupby([*by, "epoch"], sort=True, dropna=False)
        .agg(
            mean=(column, "mean"),
            std=(column, "std"),
            alive=("_fold", "nunique"),
            folds=("_n", "first"),
            zeros=("_zero", "sum"),
        )
        .reset_index()
    )
    curves["kept"] = 2 * curves["alive"] >= curves["folds"]
    spread = curves["std"].fillna(0)
    center, low, high = curves["mean"], curves["mean"] - spread, curves["mean"] + spread
    if log:
        center, low, high = np.exp(center), np.exp(low), np.exp(high)
    for name, values in (("mean", center), ("low", low), ("high", high)):
        curves[name] = values.where(curves["kept"])
    return curves


def _epoch_panel(
    ax: Axes, count_ax: Axes, frame: pd.DataFrame, styles: dict, style_keys: Sequence[str]
) -> None:
    """The curves of one panel where kept, a hollow marker where a curve is cut, and under it
    the folds alive per curve."""
    for activation, style, label, line in _lines(frame, style_keys):
        look = {"color": activation_color(activation), "linestyle": styles[style]}
        ax.plot(line["epoch"], line["mean"], label=label, linewidth=1.2, **look)
        ax.fill_between(
            line["epoch"], line["low"], line["high"], color=look["color"], alpha=0.12, linewidth=0
        )
        kept = line[line["kept"]]
        if not kept.empty and len(kept) < len(line):  # cut before the last epoch of a fold
            ax.plot(
                kept["epoch"].iloc[-1],
                kept["mean"].iloc[-1],
                marker="o",
                markersize=4,
                markerfacecolor="white",
                color=look["color"],
            )
        count_ax.plot(line["epoch"], line["alive"], drawstyle="steps-mid", linewidth=1, **look)
    folds = frame["folds"].unique()
    if len(folds) == 1:
        count_ax.axhline(folds[0] / 2, color="grey", linestyle=":", linewidth=0.8)
    count_ax.set_ylim(0, frame["folds"].max() * 1.1)
    count_ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    count_ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=True))
    n = n_text(frame.groupby(["activation", *style_keys], dropna=False)["folds"].first())
    count_ax.set(xlabel="epoch", ylabel="folds alive\n" + n.replace(" folds per curve", ""))


def _zero_note(ax: Axes, frame: pd.DataFrame, floor: float) -> None:
    """Say on a log panel where its zeros are drawn."""
    if frame.loc[frame["kept"], "zeros"].sum() == 0:
        return
    ax.axhline(floor, color="grey", linestyle=":", linewidth=0.8)
    where = blended_transform_factory(ax.transAxes, ax.transData)
    ax.text(
        0.02,
        floor,
        f"0 (drawn at {floor:.0e})",
        transform=where,
        fontsize="x-small",
        color="dimgrey",
        va="bottom",
    )


def metric_vs_epoch(
    epochs: pd.DataFrame,
    panel_keys: Sequence[str],
    style_keys: Sequence[str],
    column: str,
    label: str,
    path: Path,
    log: bool = False,
) -> Figure:
    """``column`` against the epoch (``epoch_curves``): a panel per combination of
    ``panel_keys``, a line per activation (coloured) and ``style_keys`` (line style), under each
    panel the folds alive. With ``log`` a log y axis, zeros drawn at a floor the panel names."""
    panel_keys, style_keys = _present(epochs, panel_keys), _varying(epochs, style_keys)
    floor = log_floor(epochs[column]) if log else ZERO_FLOOR
    curves = epoch_curves(epochs, [*panel_keys, "activation", *style_keys], column, log, floor)
    styles = line_styles(curves, style_keys)
    panels, places = _panels(curves, panel_keys)
    fig, axes, counts = _figure(places, counts=True)
    for ax, count_ax, (title, frame) in zip(axes, counts, panels, strict=True):
        _epoch_panel(ax, count_ax, frame, styles, style_keys)
        if log:
            ax.set_yscale("log")
            _zero_note(ax, frame, floor)
            readable_log_ticks(ax)
        ax.set(title=title, ylabel=label)
    band = "band: ×/÷ exp(std of log)\nover folds" if log else "band: ± 1 std over folds"
    extra = [band_handle(band), CUT_HANDLE]
    _legend(fig, activation_order(curves["activation"]), styles, style_keys, extra)
    average = "geometric mean" if log else "mean"
    _subtitle(
        fig,
        f"{label}: {average} over folds, drawn while at least half of a curve's folds are "
        "still training (o: cut there); lower rows: folds alive",
    )
    return _save(fig, path)


def _panel_rows(frame: pd.DataFrame, panel: str) -> pd.DataFrame:
    """The rows of ``frame`` for one forest panel (none where the frame is empty)."""
    if frame.empty or "panel" not in frame.columns:
        return pd.DataFrame()
    return frame[frame["panel"] == panel]


def _finite(values: pd.Series | Sequence[float]) -> list[float]:
    return [float(v) for v in values if pd.notna(v) and np.isfinite(v)]


def _first(frame: pd.DataFrame, column: str) -> float:
    found = _finite(frame[column]) if column in frame.columns else []
    return found[0] if found else float("nan")


def _mark(studies: pd.DataFrame, pooled: pd.DataFrame, column: str) -> float:
    """A panel's margin or claimed difference: its pooled rows', else its studies'."""
    value = _first(pooled, column)
    return value if np.isfinite(value) else _first(studies, column)


def _diamond(ax: Axes, y: float, row: dict, color: str) -> None:
    """A pooled estimate: a diamond spanning its CI, a point where the CI is not known."""
    low, mid, high = row.get("ci_low"), row.get("estimate"), row.get("ci_high")
    if len(_finite([low, mid, high])) == 3:
        corners = [(low, y), (mid, y - 0.32), (high, y), (mid, y + 0.32)]
        ax.add_patch(Polygon(corners, closed=True, color=color, gid="pooled", zorder=3))
    else:
        ax.plot([mid], [y], marker="D", color=color, linestyle="", gid="pooled", zorder=3)
    if len(_finite([row.get("pi_low"), row.get("pi_high")])) == 2:
        ax.hlines(y, row["pi_low"], row["pi_high"], color=color, linewidth=0.8, zorder=2)


def _forest_panel(ax: Axes, studies: pd.DataFrame, pooled: pd.DataFrame) -> None:
    """One panel: a square with its CI per study, then the pooled diamonds, the zero line, the
    equivalence band and the paper's claimed difference."""
    labels = []
    for y, row in enumerate(studies.to_dict("records")):
        if len(_finite([row.get("ci_low"), row.get("ci_high")])) == 2:
            ax.hlines(y, row["ci_low"], row["ci_high"], color="black", linewidth=1.2)
        ax.plot([row["estimate"]], [y], marker="s", color="black", linestyle="", gid="study")
        labels.append(str(row.get("label", "")))
    start = len(labels) + 0.5 if labels else 0
    order = {method: i for i, method in enumerate(POOLED_COLORS)}
    if not pooled.empty:
        pooled = pooled.sort_values("method", key=lambda m: m.map(order).fillna(2))
    for i, row in enumerate(pooled.to_dict("records")):
        method = str(row.get("method"))
        _diamond(ax, start + i, row, POOLED_COLORS.get(method, "#7f7f7f"))
        labels.append(POOLED_LABELS.get(method, method))
    positions = [*range(len(studies)), *(start + i for i in range(len(pooled)))]
    ax.set_yticks(positions, labels, fontsize="small")
    ax.set_ylim(max(positions, default=0) + 0.7, -0.7)
    ax.axvline(0, color="black", linewidth=0.8)
    margin, claimed = _mark(studies, pooled, "margin"), _mark(studies, pooled, "claimed")
    if np.isfinite(margin) and margin > 0:
        ax.axvspan(-margin, margin, color="#2ca02c", alpha=0.12, linewidth=0)
    if np.isfinite(claimed):
        ax.axvline(claimed, color="#d62728", linestyle="--", linewidth=1)
        where = blended_transform_factory(ax.transData, ax.transAxes)
        label = ax.text(
            claimed,
            0.98,
            "paper",
            transform=where,
            color="#d62728",
            fontsize="x-small",
            va="top",
            ha="center",
        )
        label.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def _span(studies: pd.DataFrame, pooled: pd.DataFrame) -> float:
    """The width of what a forest panel shows, zero and the margin band included (0 where
    there is nothing)."""
    columns = ("estimate", "ci_low", "ci_high", "pi_low", "pi_high", "claimed")
    values = [v for f in (studies, pooled) for c in columns if c in f for v in _finite(f[c])]
    values.append(0.0)
    margin = _mark(studies, pooled, "margin")
    values += [-margin, margin] if np.isfinite(margin) else []
    return max(values) - min(values)


def _forest_handles(studies: pd.DataFrame, pooled: pd.DataFrame) -> list:
    """Legend entries for what a forest figure shows."""
    handles: list = [Line2D([], [], color="black", marker="s", label="study (CI)")]
    methods = set(pooled["method"]) if "method" in pooled.columns else set()
    for method in POOLED_COLORS:
        if method in methods:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=POOLED_COLORS[method],
                    marker="D",
                    linestyle="",
                    label=POOLED_LABELS[method],
                )
            )
    if "pi_low" in pooled.columns and _finite(pooled["pi_low"]):
        handles.append(Line2D([], [], color="#7f7f7f", linewidth=0.8, label="prediction interval"))
    if np.isfinite(_mark(studies, pooled, "margin")):
        handles.append(Patch(color="#2ca02c", alpha=0.12, label="equivalence margin"))
    if np.isfinite(_mark(studies, pooled, "claimed")):
        handles.append(Line2D([], [], color="#d62728", linestyle="--", label="paper"))
    return handles


def forest(studies: pd.DataFrame, pooled: pd.DataFrame, path: Path) -> Figure:
    """Forest plot, a panel per distinct ``panel`` (stacked): each study (``label``,
    ``estimate``, ``ci_low``, ``ci_high``) a square on its CI; the pooled estimates (``method``
    fixed / random_dl / random_hksj) diamonds spanning their CI, the random-effects prediction
    interval (``pi_low``, ``pi_high``) a thin line; zero, the equivalence band [-margin, margin]
    and the paper's ``claimed`` difference (dashed), from the pooled rows or else the studies'.
    The x axis is shared where the panels' spans are within a factor 5 of each other (spans of
    what they show, zero and margin included)."""
    names = [str(p) for f in (studies, pooled) if "panel" in f.columns for p in f["panel"]]
    names = list(dict.fromkeys(names)) or [""]
    parts = [(_panel_rows(studies, n), _panel_rows(pooled, n)) for n in names]
    heights = [len(s) + len(p) + 1.5 for s, p in parts]
    spans = [s for s in (_span(*part) for part in parts) if s > 0]
    share = len(parts) > 1 and max(spans, default=1) <= 5 * min(spans, default=1)
    fig = Figure(figsize=(6.4, 1.2 + 0.28 * sum(heights)), layout="constrained")
    axes = fig.subplots(
        len(names), 1, sharex=share, squeeze=False, gridspec_kw={"height_ratios": heights}
    )[:, 0]
    for ax, name, (panel_studies, panel_pooled) in zip(axes, names, parts, strict=True):
        _forest_panel(ax, panel_studies, panel_pooled)
        ax.set_title(name, loc="left", fontsize="medium")
        ax.grid(axis="x", linewidth=0.3, alpha=0.5)
    axes[-1].set_xlabel("difference (estimate and CI)")
    fig.legend(
        handles=_forest_handles(studies, pooled),
        loc="outside lower center",
        ncols=3,
        fontsize="small",
    )
    return _save(fig, path)
