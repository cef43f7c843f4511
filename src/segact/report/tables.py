"""The Dice tables: mean ± std over folds (and seeds), one row per kind of run, as the runner's
plain table or the paper's layout (best mean in bold), in Markdown or LaTeX.

Used by ``segact-train`` (after a run or sweep) and ``segact-report``; nothing here imports the
report CLI or plotting, so printing a table costs no matplotlib import.

Rows are split by every named choice or setting that differs between runs of the same kind
(``row_keys``), so runs at two learning rates are two rows, never one row with twice the n.
A cell whose metric is NaN in some folds says how many folds it averages: ``0.712 ± 0.020 (n=4)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from segact.nn import loss_options
from segact.runs import schema
from segact.runs.identity import ROW_ORDER, row_keys, setting_columns, varies_within

_HEADERS: dict[str, str] = {
    schema.NLL: "NLL",
    schema.BEST_DICE: "best Dice",
    schema.THRESHOLD_AVERAGED_DICE: "threshold-averaged Dice",
}
AGGREGATIONS: dict[str, dict[str, str]] = {
    "selected": {schema.BEST_THRESHOLD: "threshold", **_HEADERS},
    "paper": {schema.paper(metric): header for metric, header in _HEADERS.items()},
}
"""The paper-style table per ``--aggregate``: folds.csv column -> header."""
CAPTIONS: dict[str, str] = {
    "selected": (
        "aggregation selected: each fold at its selected epoch (eval.protocol): the best "
        "threshold, NLL, Dice at that threshold, threshold-averaged Dice (the mean over the "
        "threshold grid)"
    ),
    "paper": (
        "aggregation paper (as the paper's generate_table.py): best Dice = max over thresholds "
        "and epochs, threshold-averaged Dice (the paper's total Dice) = max over epochs of the "
        "mean over thresholds, NLL = min over epochs, each on its own (no single epoch, so no "
        "threshold column)"
    ),
}
METRIC_NAMES: dict[str, str] = {
    metric: header for columns in AGGREGATIONS.values() for metric, header in columns.items()
}


def loss_label(name: object) -> str:
    """A loss by what it is, never a bare name that reads as a metric: "Dice loss"."""
    registered = loss_options.LOSSES.get(str(name))
    return f"{(registered.label if registered is not None else '') or name} loss"


NAN_NOTE = "(n=k): only k of the row's n folds have a value (the others are NaN, left out)."
STYLES: dict[str, tuple[str, str, str]] = {
    "plain": ("{}", " ± ", "—"),
    "markdown": ("**{}**", " ± ", "—"),
    "latex": ("\\textbf{{{}}}", " $\\pm$ ", "--"),
}
"""Style -> (bold, plus-minus, empty cell)."""


NAMED_BY: dict[str, tuple[str, ...]] = {"model": ("arch", "encoder"), "eval": ("protocol",)}
"""A config group -> the result columns that name its choice (else the group's own name)."""


def _follows_its_name(folds: pd.DataFrame, column: str) -> bool:
    """Whether a dotted setting only follows a column that names it or its group:
    ``optimizer.lr`` with ``lr``, ``activation.eps`` with the activation, ``dataset.root`` with
    the dataset, ``loss.binarize`` with ``binarize``."""
    group, name = column.split(".")[0], column.split(".")[-1]
    names = (*NAMED_BY.get(group, (group,)), name)
    known = folds[folds[column].notna()]  # unset: no value of its own (``hidden_settings``)
    return any(
        n != column and n in known.columns and not varies_within(known, [n], column) for n in names
    )


def hidden_settings(folds: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The choices and settings that differ between the runs of ``folds`` but are not among
    the ``keys`` (the columns a table shows), less those that only follow a column that names
    them (``optimizer.lr`` next to ``lr``, ``activation.eps``, ``head.name``, ``dataset.root``
    where each dataset has one): each one a table must show some other way. Unset (NaN) is no
    value of its own: a run that predates a setting, or a loss without ``loss.smooth``."""
    candidates = [c for c in (*ROW_ORDER, *setting_columns(folds)) if c in folds.columns]
    return [
        c
        for c in dict.fromkeys(candidates)
        if c not in keys
        and folds[c].nunique() > 1
        and not ("." in c and _follows_its_name(folds, c))
    ]


def _value(value: object) -> str:
    """A setting's value as a table's note writes it: 3 for 3.0, unset for NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "unset"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _values_by(frame: pd.DataFrame, column: str, by: str) -> str:
    """``column``'s values, each with the values of ``by`` it comes with: "2 (loss bce), 3 (loss
    dice)"."""
    pairs = frame[[column, by]].drop_duplicates().astype(object)
    parts = []
    for value, group in pairs.groupby(pairs[column].map(_value), sort=True):
        names = ", ".join(sorted(map(_value, group[by].unique())))
        parts.append(f"{value} ({by} {names})")
    return ", ".join(parts)


def _described(frame: pd.DataFrame, column: str, keys: Sequence[str]) -> str:
    """A setting's values in the runs of one table, with what they follow where one of ``keys``
    (or the dataset) tells them apart, else with their fold counts."""
    values = frame[column].map(_value)
    if values.nunique() == 1:
        return f"{column} {values.iloc[0]}"
    for key in dict.fromkeys(k for k in ("dataset", *keys) if k in frame.columns):
        if key != column and not varies_within(frame, [key], column):
            return f"{column} {_values_by(frame, column, key)}"
    counts = values.value_counts().sort_index()
    return f"{column} " + ", ".join(f"{v} ({n} folds)" for v, n in counts.items())


def table_settings(
    frame: pd.DataFrame, keys: Sequence[str], reference: pd.DataFrame
) -> tuple[list[str], str]:
    """What a table of ``frame`` (rows ``keys``) shows of the settings that differ between the
    runs of ``reference`` (every run of the report) without being among ``keys``: (columns to
    add: those that differ within the table and follow its rows, so no row splits; the words
    for the caption: the value of each other one in this table)."""
    columns, words = [], []
    hidden = hidden_settings(reference, keys)
    for i, setting in enumerate(hidden):
        differs = frame[setting].nunique(dropna=False) > 1
        if differs and not varies_within(frame, keys, setting):
            columns.append(setting)
        else:  # told apart by a key or by a setting before it (the loss before max_epochs)
            words.append(_described(frame, setting, [*keys, *hidden[:i]]))
    if not words:
        return columns, ""
    return columns, "Settings that differ between the report's runs, here: " + "; ".join(words)


def numeric(folds: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """The ``keys`` columns as they are and the ``metrics`` as numbers (NaN where not one)."""
    frame = folds[[*keys, *metrics]].copy()
    frame[list(metrics)] = frame[list(metrics)].apply(pd.to_numeric, errors="coerce")
    return frame


def metric_table(folds: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per row of ``keys``: mean, std and count (of non-NaN values) of each metric, plus n."""
    frame = numeric(folds, keys, metrics)
    groups = frame.groupby(list(keys), sort=True, dropna=False)
    columns = {m: groups[m].agg(["mean", "std", "count"]) for m in metrics}
    columns["n"] = groups.size().to_frame("")
    return pd.concat(columns, axis=1)


def _best_rows(table: pd.DataFrame, metric: str) -> np.ndarray:
    means = table[(metric, "mean")]
    best = means.min() if schema.lower_is_better(metric) else means.max()
    return np.isclose(means, best) & schema.ranked(metric)


def _cell_texts(table: pd.DataFrame, metric: str, style: str, rank: bool) -> Iterator[str]:
    """``mean ± std`` (the best mean in bold when ``rank``), ``(n=k)`` where values are NaN."""
    bold, plus_minus, empty = STYLES[style]
    digits = 3
    best = _best_rows(table, metric) if rank else np.zeros(len(table), dtype=bool)
    columns = (table[(metric, s)] for s in ("mean", "std", "count"))
    for mean, std, count, n, is_best in zip(*columns, table[("n", "")], best, strict=True):
        if count == 0:
            yield empty
            continue
        text = bold.format(f"{mean:.{digits}f}") if is_best else f"{mean:.{digits}f}"
        text += f"{plus_minus}{std:.{digits}f}" if count > 1 else ""
        yield text + (f" (n={count})" if count < n else "")


def format_cells(
    table: pd.DataFrame,
    headers: Mapping[str, str],
    style: str = "plain",
    rank: bool = False,
    n_header: str = "n",
) -> pd.DataFrame:
    """A ``metric_table`` as text cells, one column per metric (named by ``headers``)."""
    cells = pd.DataFrame(index=table.index)
    for metric, header in headers.items():
        cells[header] = list(_cell_texts(table, metric, style, rank))
    cells[n_header] = table[("n", "")]
    return cells.reset_index()


def has_nan_cells(table: pd.DataFrame) -> bool:
    counts = table.xs("count", axis=1, level=1)
    return bool((counts.to_numpy() < table[("n", "")].to_numpy()[:, None]).any())


def paper_table(
    folds: pd.DataFrame, keys: Sequence[str], aggregation: str = "selected"
) -> pd.DataFrame:
    """The paper's layout: per row of ``keys``, mean/std/count of the aggregation's columns."""
    return metric_table(folds, keys, list(AGGREGATIONS[aggregation]))


def _latex_escape(text: object) -> str:
    return str(text).replace("_", "\\_")


def format_paper_table(
    table: pd.DataFrame, style: str, aggregation: str = "selected", title: str = "", note: str = ""
) -> str:
    """``mean ± std`` cells, the best mean of each ranked column in bold; style markdown|latex.
    The caption names the table and the aggregation (and explains any ``(n=k)`` cell), then
    ``note`` (a sentence: the settings of the table's runs)."""
    caption = f"{title}: {CAPTIONS[aggregation]}" if title else CAPTIONS[aggregation]
    caption += f". {NAN_NOTE}" if has_nan_cells(table) else ""
    caption += f". {note}." if note else ""
    cells = format_cells(table, AGGREGATIONS[aggregation], style, rank=True)
    if style == "markdown":
        return f"Table: {caption}\n\n" + cells.to_markdown(index=False, disable_numparse=True)
    cells = cells.rename(columns=_latex_escape).map(_latex_escape)
    return cells.to_latex(
        index=False,
        escape=False,
        column_format="l" * len(cells.columns),
        caption=_latex_escape(caption),
    )


def dice_table(
    folds: pd.DataFrame, metrics: Sequence[str] = schema.SELECTED_METRICS
) -> pd.DataFrame:
    """Rows: the choices and settings that vary (e.g. loss x activation, or the dataset alone),
    with a column for each other setting that differs (it follows the rows: no row splits);
    cells: mean ± std over folds, ``(n=k)`` where some are NaN; ``folds``: rows averaged."""
    ok = folds[folds["status"] == "ok"] if "status" in folds.columns else folds
    keys = [k for k in row_keys(ok, ("dataset",)) if varies_within(ok, (), k)]
    keys = keys or [k for k in ("dataset", *ROW_ORDER) if k in ok.columns][:1]
    keys += table_settings(ok, keys, ok)[0]  # settings that follow the rows (max_epochs...)
    present = [m for m in metrics if m in ok.columns]
    table = metric_table(ok, keys, present)
    return format_cells(table, {m: m for m in present}, n_header="folds")


def format_table(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True)
