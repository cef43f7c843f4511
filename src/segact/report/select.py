"""Which folds and pairs a report uses: the ``--pair`` activations, ``--pool``ed settings,
``--common-seeds`` and ``--exclude-degenerate``; each choice it makes is said in ``notes``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from segact.errors import ReportError
from segact.runs import results
from segact.runs.identity import setting_columns

DEFAULT_PAIR = ("sigmoid", "arctan")


def row_set(frame: pd.DataFrame, keys: Sequence[str]) -> set[tuple[str, ...]]:
    return set(frame[list(keys)].astype(str).itertuples(index=False, name=None))


def choose_pairs(
    ok: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None, notes: list[str]
) -> list[tuple[str, str]]:
    """The ``--pair`` arguments, each checked against the activations that finished; without
    any, sigmoid vs arctan where both are there."""
    present = sorted(ok["activation"].unique())
    if pairs is None:
        if set(DEFAULT_PAIR) <= set(present):
            return [DEFAULT_PAIR]
        notes.append("No paired comparison: no --pair given and not both of sigmoid, arctan ran.")
        return []
    for a, b in pairs:
        unknown = [x for x in (a, b) if x not in present]
        if unknown:
            raise ReportError(
                f"--pair {a} {b}: no finished run has the activation {', '.join(unknown)} "
                f"(the activations here: {', '.join(present)})"
            )
        if a == b:
            raise ReportError(f"--pair {a} {b}: compare two different activations")
    return [tuple(p) for p in pairs]


def used_folds(ok: pd.DataFrame, exclude_degenerate: bool, notes: list[str]) -> pd.DataFrame:
    degenerate = results.flag(ok, "degenerate")
    if not exclude_degenerate:
        return ok
    if degenerate.all():
        raise ReportError("--exclude-degenerate: every finished fold is degenerate")
    notes.append(
        f"--exclude-degenerate: {int(degenerate.sum())} degenerate fold(s) of {len(ok)} dropped "
        "from the tables, statistics and plots."
    )
    return ok[~degenerate]


def pool_settings(folds: pd.DataFrame, pool: Sequence[str], notes: list[str]) -> pd.DataFrame:
    """``folds`` without the identity columns named in ``pool`` (a column, or a group such as
    ``resolved`` for all of ``resolved.*``), so runs that differ only in them share rows and
    pairs: e.g. a grid trained partly on a GPU and partly on the CPU."""
    for name in pool:
        columns = [c for c in folds.columns if c == name or c.startswith(f"{name}.")]
        if not columns:
            known = ", ".join(setting_columns(folds)) or "none"
            raise ReportError(f"--pool {name}: the runs have no such setting (names: {known})")
        for column in columns:
            counts = folds[column].astype("string").fillna("unset").value_counts().sort_index()
            values = ", ".join(f"{value} ({n} folds)" for value, n in counts.items())
            notes.append(f"--pool {name}: rows and pairs pool the values of {column}: {values}.")
        folds = folds.drop(columns=columns)
    return folds


def common_seed_folds(ok: pd.DataFrame, keys: Sequence[str], notes: list[str]) -> pd.DataFrame:
    """Per dataset, only the seeds that every row of its table has finished: the cells of an
    unfinished grid are then means over the same seeds (and a no-op once the grid is done)."""
    kept = []
    for name, group in ok.groupby("dataset", sort=True):
        every_row = row_set(group, keys)
        seeds = sorted(group["seed"].unique())
        common = [s for s in seeds if row_set(group[group["seed"] == s], keys) == every_row]
        if common != seeds:
            notes.append(
                f"--common-seeds: dataset {name} uses seed(s) "
                f"{', '.join(map(str, common)) or 'none'} of {', '.join(map(str, seeds))}, "
                "the ones every row has finished."
            )
        kept.append(group[group["seed"].isin(common)])
    used = pd.concat(kept) if kept else ok
    if used.empty:
        raise ReportError("--common-seeds: no dataset has a seed that every row has finished")
    return used


SIZE = "dataset.image_size"


def headline_scope(ok: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(each dataset's folds at its headline input size, the folds at its other sizes). The
    headline size is the largest a dataset ran at (where its structures survive best, and the
    size a plan moves on to); the other sizes enter no table, pair, pooled estimate or verdict."""
    if SIZE not in ok.columns:
        return ok, ok.iloc[:0]
    size = pd.to_numeric(ok[SIZE], errors="coerce")
    largest = size.groupby(ok["dataset"]).transform("max")
    headline = (size == largest) | largest.isna()
    other = ok[~headline]
    if not other.empty:
        left = other.groupby("dataset")[SIZE].unique()
        listed = "; ".join(f"{d} at {', '.join(map(str, s))} px" for d, s in left.items())
        notes.append(
            f"Scope: each dataset at its largest input size; {len(other)} fold(s) at other "
            f"sizes ({listed}) are shown in 'Other input sizes' only."
        )
    return ok[headline], other
