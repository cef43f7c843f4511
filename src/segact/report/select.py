"""Which folds and comparisons a report uses: the factors the runs vary (``--compare``), their
levels (``--pair``, ``--baseline``), ``--pool``ed settings, ``--common-seeds``,
``--exclude-degenerate`` and whether the paper's claims frame it (``--paper-claims``); each
choice it makes is said in ``notes``."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import pandas as pd

from segact.errors import ReportError
from segact.report.claims import PAPER_EXPERIMENTS
from segact.report.stats import FACTOR_NAMES, Comparison, factor_column, level_mask
from segact.runs import results, schema
from segact.runs.identity import DATA_FINGERPRINT, REPLICATES, row_keys, setting_columns

PAIR_FACTOR = "activation"
"""What ``--pair`` compares without ``--compare``."""
RESOLVED = "resolved."
"""Settings the machine resolved: never a factor (a grid split over devices is one experiment;
``--pool resolved`` merges it). Nor is the dataset: every comparison is per dataset."""


DATA_KEYS = frozenset(
    {"dataset.root", DATA_FINGERPRINT, "dataset.images_dir", "dataset.masks_dir", "dataset.split"}
)
"""Settings that say which files a run read: part of the dataset, never a factor (two folders of
one format are two datasets, compared within, not against each other)."""


def row_set(frame: pd.DataFrame, keys: Sequence[str]) -> set[tuple[str, ...]]:
    return set(frame[list(keys)].astype(str).itertuples(index=False, name=None))


def factor_columns(ok: pd.DataFrame) -> list[str]:
    """Every choice or setting that varies among runs of one dataset alike in the factors
    before it (``identity.row_keys``: a setting that follows another, such as ``loss.name``
    with ``loss``, is not one more factor), the dataset and ``resolved.*`` aside."""
    keys = row_keys(ok, always=("dataset",))
    return [
        k
        for k in keys
        if k != "dataset"
        and not k.startswith(RESOLVED)
        and k not in REPLICATES
        and k not in DATA_KEYS
    ]


def levels(values: pd.Series) -> list[str]:
    """A factor's levels as text, in order: by number where every level is one, else by name."""
    present = values.dropna()
    named = dict(zip(present.astype(str), present, strict=True))
    numbers = pd.to_numeric(pd.Series(list(named)), errors="coerce")
    if numbers.notna().all():
        return [name for _, name in sorted(zip(numbers, named, strict=True))]
    return sorted(named)


def _level(values: pd.Series, level: str) -> str | None:
    """``level`` as the runs spell it (``1e-3``: the learning rate 0.001); None if none has it."""
    found = values[level_mask(values, level)].dropna()
    return str(found.iloc[0]) if not found.empty else None


def _factor_words(ok: pd.DataFrame) -> str:
    names = [FACTOR_NAMES.get(c, c) for c in factor_columns(ok)]
    return f"the factors these runs vary: {', '.join(names) or 'none'}"


def _columns(ok: pd.DataFrame, factors: Sequence[str], pairs: object) -> list[str]:
    """The columns of the factors to compare: ``--compare`` ones, else activations for
    ``--pair``, else every factor the runs vary."""
    if not factors:
        return [PAIR_FACTOR] if pairs else factor_columns(ok)
    columns = []
    for name in factors:
        column = factor_column(ok, name)
        if column is None:
            raise ReportError(
                f"--compare {name}: the runs have no such setting ({_factor_words(ok)})"
            )
        if ok[column].nunique() < 2:
            value = ", ".join(ok[column].dropna().astype(str).unique()) or "unset"
            raise ReportError(
                f"--compare {name}: every run has the same {name} ({value}); {_factor_words(ok)}"
            )
        columns.append(column)
    return list(dict.fromkeys(columns))


def choose_comparisons(
    ok: pd.DataFrame,
    factors: Sequence[str] = (),
    pairs: Sequence[tuple[str, str]] | None = None,
    baseline: str | None = None,
    notes: list[str] | None = None,
) -> list[Comparison]:
    """The comparisons a report makes. Factors: ``--compare`` (``factors``), else the
    activations where ``--pair`` is given, else every factor the runs vary. Levels per factor:
    the ``--pair`` levels (a pair that no compared factor has both levels of is an error), else
    each level against ``--baseline`` (b), else every two levels, b the earlier in ``levels``
    order (``loss``: dice - bce; ``activation``: sigmoid - arctan)."""
    notes = [] if notes is None else notes
    if pairs and baseline is not None:
        raise ReportError("--pair and --baseline: give the levels one way, not both")
    columns = _columns(ok, factors, pairs)
    chosen: list[Comparison] = []
    for pair in pairs or ():
        found = [c for column in columns for c in _pairs(ok, column, pair, len(columns) == 1)]
        if not found:
            raise ReportError(f"--pair {pair[0]} {pair[1]}: no compared factor has both levels")
        chosen += found
    for column in columns if not pairs else ():
        found = levels(ok[column])
        if baseline is None:
            chosen += [Comparison(column, a, b) for b, a in combinations(found, 2)]
        elif (level := _level(ok[column], baseline)) is not None:
            chosen += [Comparison(column, x, level) for x in found if x != level]
    if baseline is not None and not pairs and not chosen:
        names = ", ".join(FACTOR_NAMES.get(c, c) for c in columns)
        raise ReportError(f"--baseline {baseline}: no run of {names or 'any factor'} has it")
    if not chosen:
        notes.append(
            "No paired comparison: the runs of a dataset vary no choice or setting "
            "(segact-report --compare KEY names one)."
        )
    return chosen


def _pairs(ok: pd.DataFrame, column: str, pair: tuple[str, str], strict: bool) -> list[Comparison]:
    """The ``--pair`` levels of the factor ``column``: none where it lacks one (``strict``: an
    error naming the levels there)."""
    factor = FACTOR_NAMES.get(column, column)
    values = ok[column] if column in ok.columns else pd.Series(dtype=object)
    a, b = pair
    found = [_level(values, x) for x in pair]
    if None in found:
        if not strict:
            return []
        unknown = [x for x, f in zip(pair, found, strict=True) if f is None]
        raise ReportError(
            f"--pair {a} {b}: no finished run has the {factor} {', '.join(unknown)} "
            f"(the {factor} levels here: {', '.join(levels(values))})"
        )
    if found[0] == found[1]:
        raise ReportError(f"--pair {a} {b}: compare two different levels of {factor}")
    return [Comparison(column, str(found[0]), str(found[1]))]


def paper_claims_default(ok: pd.DataFrame) -> bool:
    """Whether a report shows the paper's claims without ``--paper-claims``: only when every
    finished run is of one of the paper's experiments (``experiment_name``)."""
    if "experiment" not in ok.columns or ok.empty:
        return False
    return bool(ok["experiment"].astype(str).isin(PAPER_EXPERIMENTS).all())


def used_folds(ok: pd.DataFrame, exclude_degenerate: bool, notes: list[str]) -> pd.DataFrame:
    degenerate = results.flag(ok, schema.DEGENERATE)
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


def headline_scope(
    ok: pd.DataFrame, notes: list[str], compared: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(each dataset's folds at its headline input size, the folds at its other sizes). The
    headline size is the largest a dataset ran at (where its structures survive best, and the
    size a plan moves on to); the other sizes enter no table, pair, pooled estimate or verdict.
    Where ``compared`` (``--compare``) names the input size, every size is kept."""
    if SIZE not in ok.columns:
        return ok, ok.iloc[:0]
    if SIZE in compared:
        notes.append(f"--compare {SIZE}: every input size is kept, each a level of the factor.")
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
