"""K-fold splits by case: every image of a case lands in the same fold.

Written by hand (a permutation and ``np.array_split``) because scikit-learn's GroupKFold, the
library alternative, would be this project's only reason to depend on scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # image indices
    val: np.ndarray


def case_folds(cases: np.ndarray, n_folds: int, seed: int, shuffle: bool = True) -> list[Fold]:
    """``n_folds`` folds over the unique cases, shuffled with ``seed`` (or, with ``shuffle`` off,
    contiguous in sorted case order like sklearn's ``KFold(n_splits)``, the paper's split);
    sizes differ by <= 1."""
    unique = np.unique(cases)
    if not 2 <= n_folds <= len(unique):
        raise ValueError(
            f"trainer.folds={n_folds} needs 2 <= folds <= number of cases ({len(unique)})"
        )
    ordered = np.random.default_rng(seed).permutation(unique) if shuffle else unique
    folds = []
    for index, val_cases in enumerate(np.array_split(ordered, n_folds)):
        in_val = np.isin(cases, val_cases)
        folds.append(Fold(index, np.flatnonzero(~in_val), np.flatnonzero(in_val)))
    return folds


def inner_split(
    cases: np.ndarray, train: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training images by case into (inner train, inner validation)."""
    unique = np.unique(cases[train])
    n_val = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    val_cases = np.random.default_rng(seed).permutation(unique)[:n_val]
    in_val = np.isin(cases[train], val_cases)
    return train[~in_val], train[in_val]
