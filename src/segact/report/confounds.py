"""Two confounds of the paired comparison, each computed, written to its CSV and put in words.

The stopping confound: under the paper protocol a fold trains until its selection metric
(``val_threshold_averaged_dice``) stops improving and reports the Dice of its best epoch, so an
activation that trains longer is also read later. ``matched_epochs`` recomputes every fold's
reported Dice as if training had stopped after a fixed number of epochs (the same for both runs
of a pair) and says whether the difference between the activations survives there.

Device as a replicate: the same configuration run on a GPU and on a CPU gives other numbers
(float reductions differ), so it is one result measured twice, not two results.
``split_device_replicates`` keeps one device's folds for every table and statistic (a
configuration counts once), ``device_differences`` measures how far the devices differ, and
``device_sections`` puts that next to the activation effects it could change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from segact.errors import ReportError
from segact.io import write_csv
from segact.report import stats
from segact.report.sections import as_markdown, drop_constant
from segact.report.stats import COMPARISON, Comparison
from segact.runs import schema
from segact.runs.folder import column_or_nan
from segact.runs.identity import CHOICES, row_keys, setting_columns

BUDGETS: tuple[int, ...] = (10, 20, 40)
LAST_COMMON = "last common"
SELECTED = "selected"
RESOLVED = "resolved."
DEVICE_METRICS: tuple[str, ...] = (schema.BEST_DICE, schema.THRESHOLD_AVERAGED_DICE)
RUN_FOLD = ["run_path", "fold"]
T_COLUMNS: tuple[str, ...] = ("mean_difference", "ci_low", "ci_high", "t_test_p")
MATCHED_COLUMNS: tuple[str, ...] = (
    "budget",
    "budget_epoch_median",
    *stats.PAIRED_MEANS,
    "t_test_p",
    "epoch_a_median",
    "epoch_b_median",
)
"""matched_epochs.csv after the comparison and its keys. budget_epoch_median: the median epoch
training stops at (the budget; the pairs' last common epoch), epoch_*_median: the median epoch
each side selects within it."""


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"] if "status" in frame.columns else frame


def _t_summary(differences: np.ndarray) -> dict[str, float]:
    """Mean difference, its 95% t-interval and the paired t-test p (NaN without spread)."""
    low, high = stats.t_interval(differences)
    undefined = len(differences) < 2 or np.ptp(differences) == 0
    p = np.nan if undefined else float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)
    mean = float(differences.mean()) if len(differences) else np.nan
    return {"mean_difference": mean, "ci_low": low, "ci_high": high, "t_test_p": p}


def _where(names: Sequence[str], values: Sequence[object]) -> str:
    """``isbi2012, dice, dataset.image_size=96``: the named choices bare, settings as key=value."""
    return ", ".join(
        str(v) if k in CHOICES else f"{k}={v}" for k, v in zip(names, values, strict=True)
    )


def _ci_text(row: pd.Series) -> str:
    return f"{row['mean_difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


# --- the stopping confound ---------------------------------------------------------------------


def selected_epochs(folds: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per dataset x ``keys`` of the finished folds: n folds, and the median, min and max of the
    selected epoch and of the epochs trained."""
    ok = _ok(folds)
    by = [k for k in dict.fromkeys(["dataset", *keys]) if k in ok.columns]
    columns = [c for c in (schema.EPOCH_SELECTED, schema.EPOCHS_RUN) if c in ok.columns]
    values = ok[by].join(ok[columns].apply(pd.to_numeric, errors="coerce"))
    grouped = values.groupby(by, sort=True, dropna=False)
    table = grouped.size().rename("n_folds").to_frame()
    if columns:  # folds.csv files of older versions lack them
        spread = grouped[columns].agg(["median", "min", "max"])
        spread.columns = [f"{column}_{statistic}" for column, statistic in spread.columns]
        table = table.join(spread)
    return table.reset_index()


def _running_selection(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per run x fold and epoch: the epoch the fold would select had training stopped after this
    one (the highest ``val_threshold_averaged_dice`` so far, ties: the earliest) and that epoch's
    ``val_best_dice``, the Dice it would report."""
    frame = epochs[[*RUN_FOLD, "epoch"]].copy()
    for column in ("epoch", schema.VAL_THRESHOLD_AVERAGED_DICE, schema.VAL_BEST_DICE):
        frame[column] = pd.to_numeric(epochs[column], errors="coerce").astype(float)
    frame = frame.dropna(subset=["epoch"]).sort_values([*RUN_FOLD, "epoch"], ignore_index=True)
    score = frame[schema.VAL_THRESHOLD_AVERAGED_DICE].fillna(-np.inf)  # unscored: never wins
    group = [frame["run_path"], frame["fold"]]
    best_before = score.groupby(group).cummax().groupby(group).shift()
    improved = best_before.isna() | (score > best_before)
    chosen = pd.Series(np.where(improved, frame.index, np.nan)).groupby(group).ffill()
    chosen = chosen.astype(int).to_numpy()
    frame["selected_epoch"] = frame["epoch"].to_numpy()[chosen]
    frame["reported"] = frame[schema.VAL_BEST_DICE].to_numpy()[chosen]
    return frame[[*RUN_FOLD, "epoch", "selected_epoch", "reported"]]


def _read_at(curves: pd.DataFrame, pairs: pd.DataFrame, side: str) -> pd.DataFrame:
    """``reported_<side>`` and ``epoch_<side>`` (the epoch selected) of each pair's ``side`` run
    x fold had it stopped after epoch ``at_<side>``."""
    runs = pd.Index(curves["run_path"].unique())  # integer run ids: merge_asof's keys
    request = pd.DataFrame(
        {
            "row": pairs.index,
            "run": runs.get_indexer(pairs[f"run_path_{side}"]),
            "fold": pairs["fold"].to_numpy(),
            "at": pairs[f"at_{side}"].astype(float).to_numpy(),
        }
    ).sort_values("at", kind="stable")
    curves = curves.assign(run=runs.get_indexer(curves["run_path"]), fold=curves["fold"])
    curves = curves.drop(columns="run_path").sort_values("epoch", kind="stable")
    found = pd.merge_asof(
        request, curves, left_on="at", right_on="epoch", by=["run", "fold"], direction="backward"
    ).set_index("row")
    return pairs.assign(
        **{f"value_{side}": found["reported"], f"epoch_{side}": found["selected_epoch"]}
    )


def _runs(
    epochs: pd.DataFrame, comparison: Comparison, level: str, index: list[str]
) -> pd.DataFrame:
    """One row per run x fold at ``level`` of the factor: its pair index, run_path, last epoch."""
    rows = epochs[stats.level_mask(epochs[comparison.column], level)]
    last = rows.groupby([*index, "run_path"], sort=False, dropna=False)["epoch"].max()
    runs = last.rename("last").reset_index()
    repeated = int(runs.duplicated(index).sum())
    if repeated:
        raise ReportError(
            f"cannot pair {comparison.factor} {level}: {repeated} fold(s) equal another in "
            f"{', '.join(index)}"
        )
    return runs


def budget_values(
    epochs: pd.DataFrame, comparison: Comparison, keys: Sequence[str], budgets: Sequence[int]
) -> pd.DataFrame:
    """One row per pair of run x folds (equal in ``keys``, seed and fold) and budget that both
    runs reached: ``value_a``, ``value_b`` (the Dice each would report), ``difference``."""
    index = [*keys, "seed", "fold"]
    side_a = _runs(epochs, comparison, comparison.a, index)
    side_b = _runs(epochs, comparison, comparison.b, index)
    pairs = side_a.merge(side_b, on=index, suffixes=("_a", "_b"))
    common = pairs[["last_a", "last_b"]].min(axis=1)
    reads = [(str(e), e, e) for e in budgets]
    reads += [(LAST_COMMON, common, common), (SELECTED, pairs["last_a"], pairs["last_b"])]
    curves = _running_selection(epochs)
    frames = []
    for label, at_a, at_b in reads:
        chosen = pairs.assign(budget=label, at_a=at_a, at_b=at_b)
        chosen = chosen[(chosen["last_a"] >= chosen["at_a"]) & (chosen["last_b"] >= chosen["at_b"])]
        frames.append(_read_at(curves, _read_at(curves, chosen, "a"), "b"))
    out = pd.concat(frames, ignore_index=True)
    out["difference"] = out["value_a"] - out["value_b"]
    out["budget_epoch"] = out["at_a"].where(out["budget"] != SELECTED)  # none: each its own
    for position, (name, value) in enumerate(comparison.labels().items()):
        out.insert(position, name, value)
    return out


def matched_epochs(
    epochs: pd.DataFrame,
    comparison: Comparison,
    keys: Sequence[str],
    budgets: Sequence[int] = BUDGETS,
) -> pd.DataFrame:
    """Per ``keys`` and budget ("10", ..., "last common": the smaller of the pair's last epochs,
    "selected": each run's own selection, the reported values): n pairs, the mean Dice of a
    and b, the mean difference a - b with its 95% t-interval, the paired t-test p, and the
    median epoch each side is read at. ``keys``: ``stats.comparison_keys``."""
    by = [*COMPARISON, *keys, "budget"]
    values = budget_values(epochs, comparison, keys, budgets)
    if values.empty:
        return pd.DataFrame(columns=[*by[:-1], *MATCHED_COLUMNS])
    order = [*(str(e) for e in budgets), LAST_COMMON, SELECTED]
    values["budget"] = pd.Categorical(values["budget"], categories=order, ordered=True)
    rows = []
    for key, group in values.groupby(by, sort=True, dropna=False, observed=True):
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "budget_epoch_median": group["budget_epoch"].median(),
                "n": len(group),
                "mean_a": group["value_a"].mean(),
                "mean_b": group["value_b"].mean(),
                **_t_summary(group["difference"].to_numpy(dtype=float)),
                "epoch_a_median": group["epoch_a"].median(),
                "epoch_b_median": group["epoch_b"].median(),
            }
        )
    table = pd.DataFrame(rows)
    table["budget"] = table["budget"].astype(str)
    return table[[*by[:-1], *MATCHED_COLUMNS]]


def _excludes_zero(row: pd.Series) -> bool:
    return bool(row["ci_low"] > 0 or row["ci_high"] < 0)  # False for a NaN interval


def survival(reported: pd.Series, matched: pd.Series | None) -> str:
    """In words: does the difference at the last common epoch keep the reported one's sign and,
    where the reported CI excludes zero, exclude zero too?"""
    if matched is None:
        return "no common budget"
    same_sign = np.sign(matched["mean_difference"]) == np.sign(reported["mean_difference"])
    if not _excludes_zero(reported):
        also = "excludes zero there" if _excludes_zero(matched) else "includes zero there too"
        return f"no effect to survive (the reported CI includes zero); the matched CI {also}"
    if same_sign and _excludes_zero(matched):
        return "survives at matched budgets"
    if same_sign:
        return "does not survive: same sign at matched budgets, but the CI includes zero"
    if _excludes_zero(matched):
        return "reverses at matched budgets (the sign flips and the CI excludes zero)"
    return "does not survive: the sign flips at matched budgets"


def _stopping_words(matched: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """One sentence per comparison x ``keys`` (dataset, loss, ...): reported vs last common
    epoch."""
    by = [*COMPARISON, *keys]
    lines = []
    for key, group in matched.groupby(by, sort=True, dropna=False):
        rows = group.set_index("budget")
        reported = rows.loc[SELECTED]
        common = rows.loc[LAST_COMMON] if LAST_COMMON in rows.index else None
        text = (
            f"{key[0]}: {key[1]} - {key[2]}, {_where(keys, key[3:])}: reported "
            f"{_ci_text(reported)} "
            f"(n = {reported['n']}, median selected epoch {reported['epoch_a_median']:g} vs "
            f"{reported['epoch_b_median']:g})"
        )
        if common is not None:
            text += (
                f"; at the last common epoch (median {common['budget_epoch_median']:g}) "
                f"{_ci_text(common)} (selected epochs "
                f"{common['epoch_a_median']:g} vs {common['epoch_b_median']:g})"
            )
        lines.append(f"- {text}: {survival(reported, common)}.")
    return lines


def stopping_sections(
    used: pd.DataFrame,
    epochs: pd.DataFrame,
    comparisons: Sequence[Comparison],
    keys_rows: Sequence[str],
    out: Path,
) -> list[str]:
    """selected_epochs.csv, matched_epochs.csv and their words; [] (no file) without epochs
    (a report built from a results CSV)."""
    if epochs.empty:
        return []
    ok = _ok(used)
    if "run_path" in ok.columns:  # the used folds' epochs only
        epochs = epochs.merge(ok[RUN_FOLD].drop_duplicates(), on=RUN_FOLD)
    selected = selected_epochs(ok, keys_rows)
    keyed = [(c, stats.comparison_keys(ok, c.column)) for c in comparisons]
    tables = [(matched_epochs(epochs, c, keys), keys) for c, keys in keyed]
    tables = [(t, keys) for t, keys in tables if not t.empty]
    none = Comparison("activation", "", "")
    matched = stats.stack([t for t, _ in tables], [k for _, keys in tables for k in keys])
    if matched.empty:
        matched = matched_epochs(epochs.iloc[:0], none, ["dataset"])
    write_csv(selected, out / "selected_epochs.csv")
    write_csv(matched, out / "matched_epochs.csv")
    lines = [
        "## The stopping confound",
        "",
        "A fold stops when its selection metric (validation threshold-averaged Dice) has not "
        "improved for a while and reports the best Dice of its best epoch, so a level that "
        "trains longer is also read later. Below: the epochs selected and trained, then each "
        "comparison's difference a - b had both runs stopped after the same number of epochs "
        "(10, 20, 40, the last epoch both reached, and as reported: each at its own selected "
        "epoch), with the plain paired t's 95% interval and p (to compare the rows with each "
        "other; the corrected intervals above are wider); epoch_*_median: the median epoch "
        "each side is read at.",
        "",
        as_markdown(drop_constant(selected)),
        "",
    ]
    if matched.empty:
        return [*lines, "No run pairs with epochs found.", ""]
    shown = drop_constant(matched, keep=("dataset", "loss"))
    words = [line for table, keys in tables for line in _stopping_words(table, keys)]
    return [*lines, as_markdown(shown), "", *words, ""]


# --- device as a replicate ---------------------------------------------------------------------


def _count(value: object) -> object:
    """A thread count as text, ``1`` whether it was read as 1, 1.0 or "1"; NaN stays."""
    if pd.isna(value):
        return np.nan
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


def device_names(frame: pd.DataFrame) -> pd.Series:
    """``cuda``, ``cpu (1 thread)``: the device and, where recorded, the CPU thread count."""
    device = column_or_nan(frame, "resolved.device").astype(object).fillna("unknown").astype(str)
    threads = column_or_nan(frame, "resolved.threads").astype(object).map(_count)
    named = [
        d if pd.isna(t) else f"{d} ({t} thread{'' if t == '1' else 's'})"
        for d, t in zip(device, threads, strict=True)
    ]
    return pd.Series(named, index=frame.index, dtype=object)


def _identity(frame: pd.DataFrame) -> list[str]:
    """What makes a fold result, the device aside: choices, settings but resolved.*, seed, fold."""
    settings = [c for c in setting_columns(frame) if not c.startswith(RESOLVED)]
    return [*(c for c in CHOICES if c in frame.columns), *settings, "seed", "fold"]


def _config_ids(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    return frame.groupby(list(columns), sort=False, dropna=False).ngroup()


def split_device_replicates(
    folds: pd.DataFrame, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, replicates): where one configuration x seed x fold finished on several devices,
    the rows of the device with the most finished folds of that dataset (ties: by name) stay,
    so that a grid's pairs stay on the device it ran on; the others move to ``replicates``;
    ``notes`` gains a line per device moved."""
    if "resolved.device" not in folds.columns:
        return folds, folds.iloc[:0]
    ok = _ok(folds)
    identity = _identity(ok)
    frame = pd.DataFrame(
        {"config": _config_ids(ok, identity), "device": device_names(ok), "dataset": ok["dataset"]}
    )
    frame["here"] = frame.groupby(["dataset", "device"])["config"].transform("size")
    shared = frame[frame.groupby("config")["device"].transform("nunique") > 1]
    if shared.empty:
        return folds, folds.iloc[:0]
    order = shared.sort_values(["config", "here", "device"], ascending=[True, False, True])
    kept = shared["config"].map(order.groupby("config")["device"].first())
    moved = shared[shared["device"] != kept].assign(kept=kept)
    configurations = _config_ids(ok, identity[:-2])
    for (other, kept), group in moved.groupby(["device", "kept"], sort=True):
        notes.append(
            f"{len(group)} fold(s) of {configurations[group.index].nunique()} configuration(s) "
            f"also ran on {other}: kept the {kept} ones for every table and statistic; the "
            "others are compared in 'Device as a replicate'"
        )
    return folds.drop(index=moved.index), folds.loc[moved.index]


def _group_keys(frame: pd.DataFrame) -> list[str]:
    """dataset, loss, activation and every setting that splits them, the device aside."""
    resolved = [c for c in frame.columns if c.startswith(RESOLVED)]
    return row_keys(frame.drop(columns=resolved))


def device_pairs(
    kept: pd.DataFrame, replicates: pd.DataFrame, metrics: Sequence[str] = DEVICE_METRICS
) -> pd.DataFrame:
    """One row per replicate fold x metric: its group keys, seed, fold, ``kept_device``,
    ``other_device``, ``value_kept``, ``value_other`` and ``difference`` = other - kept."""
    both = pd.concat([_ok(kept).assign(_kept=True), _ok(replicates).assign(_kept=False)])
    both = both.reset_index(drop=True)
    identity, keys = _identity(both), _group_keys(both)
    metrics = [m for m in metrics if m in both.columns]
    both = both.assign(_config=_config_ids(both, identity), _device=device_names(both))
    both[metrics] = both[metrics].apply(pd.to_numeric, errors="coerce")
    kept_rows = both[both["_kept"]].drop_duplicates("_config")
    other = both[~both["_kept"]][["_config", "_device", *metrics]]
    merged = other.merge(kept_rows, on="_config", suffixes=("_other", "_kept"))
    frames = [
        merged[[*keys, "seed", "fold"]].assign(
            kept_device=merged["_device_kept"].to_numpy(),
            other_device=merged["_device_other"].to_numpy(),
            metric=metric,
            value_kept=merged[f"{metric}_kept"].to_numpy(),
            value_other=merged[f"{metric}_other"].to_numpy(),
        )
        for metric in metrics
    ]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not out.empty:
        out["difference"] = out["value_other"] - out["value_kept"]
    return out


def _keys_of(per_fold: pd.DataFrame) -> list[str]:
    """The group keys of a ``device_pairs`` frame: its columns before seed."""
    return list(per_fold.columns[: per_fold.columns.get_loc("seed")])


def _spread(differences: pd.Series) -> dict[str, float]:
    absolute = differences.abs()
    return {
        "n": int(differences.count()),
        "mean_difference": differences.mean(),
        "mean_abs_difference": absolute.mean(),
        "max_abs_difference": absolute.max(),
    }


def _summarise_spread(per_fold: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = [
        {**dict(zip(by, key, strict=True)), **_spread(group["difference"])}
        for key, group in per_fold.groupby(by, sort=True, dropna=False)
    ]
    return pd.DataFrame(rows)


def device_differences(
    kept: pd.DataFrame, replicates: pd.DataFrame, metrics: Sequence[str] = DEVICE_METRICS
) -> pd.DataFrame:
    """Per dataset x loss x activation (and any setting that splits them), device pair and
    metric: n folds, the mean difference other - kept device, its mean and max absolute value."""
    per_fold = device_pairs(kept, replicates, metrics)
    if per_fold.empty:
        return per_fold
    return _summarise_spread(
        per_fold, [*_keys_of(per_fold), "kept_device", "other_device", "metric"]
    )


def device_effects(
    kept: pd.DataFrame,
    replicates: pd.DataFrame,
    comparisons: Sequence[Comparison],
    metrics: Sequence[str] = DEVICE_METRICS,
) -> pd.DataFrame:
    """Per comparison, its keys, metric and device: the paired effect a - b measured on that
    device alone (n, mean, 95% t-interval, t-test p), over the seeds and folds both levels have
    on more than one device, so every device's effect is over the same pairs."""
    both = pd.concat([_ok(kept), _ok(replicates)], ignore_index=True)
    both["device"] = device_names(both)
    plain = both.drop(columns=[c for c in both.columns if c.startswith(RESOLVED)])
    frames, every_key = [], []
    for comparison in comparisons:
        keys = stats.comparison_keys(plain, comparison.column)
        every_key += keys
        differences = pd.concat(
            [
                stats.paired_differences(rows, comparison, keys, metrics).assign(device=device)
                for device, rows in both.groupby("device", sort=True)
            ],
            ignore_index=True,
        )
        index = [*COMPARISON, *keys, "seed", "fold", "metric"]
        devices = differences.groupby(index, dropna=False)["device"].transform("nunique")
        by = [*COMPARISON, *keys, "metric", "device"]
        rows = [
            {
                **dict(zip(by, key, strict=True)),
                "n": len(group),
                **_t_summary(group["difference"].to_numpy(dtype=float)),
            }
            for key, group in differences[devices > 1].groupby(by, sort=True, dropna=False)
        ]
        frames.append(pd.DataFrame(rows, columns=[*by, "n", *T_COLUMNS]))
    effects = stats.stack(frames, every_key)
    if effects.empty:
        return pd.DataFrame(columns=[*COMPARISON, "dataset", "metric", "device", "n", *T_COLUMNS])
    return effects


def _metric_words(metric: str) -> str:
    return metric.replace("_", " ").replace("dice", "Dice").replace(schema.NLL, "NLL")


def _matching(summary: pd.DataFrame, keys: Sequence[str], values: Sequence[object]) -> pd.DataFrame:
    """The summary rows of these key values (keys a row does not pair on are not compared: the
    summary lacks them, or has none for that row's comparison, e.g. its own factor)."""
    match = pd.Series(True, index=summary.index)
    for key, value in zip(keys, values, strict=True):
        if key in summary.columns:
            match &= (summary[key].astype(str) == str(value)) | summary[key].isna()
    return summary[match]


def _device_words(per_fold: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Per metric x dataset x loss x activation (x setting) x device pair: the mean
    |difference| per fold next to every paired effect of those keys in ``summary``."""
    keys = _keys_of(per_fold)
    by = ["metric", *keys, "other_device", "kept_device"]
    if "metric" not in summary.columns:
        summary = pd.DataFrame(columns=["metric"])
    lines = []
    for key, group in per_fold.groupby(by, sort=True, dropna=False):
        spread = _spread(group["difference"])
        text = (
            f"{_metric_words(key[0])}, {_where(keys, key[1 : len(keys) + 1])}: the devices "
            f"({key[-2]} vs {key[-1]}) differ by {spread['mean_abs_difference']:.4f} per fold "
            f"on average (|diff|; max {spread['max_abs_difference']:.4f}, n = {spread['n']})"
        )
        effects = _matching(summary[summary["metric"] == key[0]], keys, key[1 : len(keys) + 1])
        for _, effect in effects.iterrows():
            text += (
                f"; the {effect['factor']} {effect['a']} - {effect['b']} effect is "
                f"{_ci_text(effect)} (n = {effect['n']})"
            )
        lines.append(f"- {text}.")
    return lines


def device_sections(
    kept: pd.DataFrame,
    replicates: pd.DataFrame,
    summary: pd.DataFrame,
    out: Path,
    metrics: Sequence[str] | None = None,
) -> list[str]:
    """device_differences.csv, device_effects.csv and their words; [] (no file) without
    replicates. ``metrics``: the summary's (those the folds have), else best and
    threshold-averaged Dice."""
    if _ok(replicates).empty:
        return []
    paired = list(dict.fromkeys(summary["metric"])) if "metric" in summary.columns else []
    metrics = list(metrics or [m for m in paired if m in kept.columns] or DEVICE_METRICS)
    table = device_differences(kept, replicates, metrics)
    named = summary[list(COMPARISON)] if paired else pd.DataFrame(columns=list(COMPARISON))
    comparisons = [
        Comparison(stats.factor_column(kept, factor) or factor, str(a), str(b))
        for factor, a, b in dict.fromkeys(named.itertuples(index=False, name=None))
    ]
    effects = device_effects(kept, replicates, comparisons, metrics)
    write_csv(table, out / "device_differences.csv")
    write_csv(effects, out / "device_effects.csv")
    lines = [
        "## Device as a replicate",
        "",
        "The same configuration, seed and fold trained on two devices (float reductions differ "
        "between them) is one result measured twice: the tables and statistics keep one device's "
        "folds, and here is how far the other device's differ (other - kept, per fold).",
        "",
        as_markdown(table),
        "",
        *_device_words(device_pairs(kept, replicates, metrics), summary),
        "",
    ]
    if effects.empty:
        return lines
    return [
        *lines,
        "The paired effect on each device alone, over the seeds and folds both levels have "
        "on every device shown (plain paired t: 95% interval and p):",
        "",
        as_markdown(drop_constant(effects, keep=("dataset", "loss"))),
        "",
    ]
