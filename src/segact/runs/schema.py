"""Every column of a run's result files, declared once: ``folds.csv`` (``FOLDS``), ``epochs.csv``
(``EPOCHS``) and ``thresholds.csv`` (``THRESHOLDS``), each with its kind, dtype, range, direction
(for metrics) and what fills it (the names older segact versions wrote: ``runs/legacy.py``).

Writers spell a column by its constant here (``schema.BEST_DICE``), readers type and check it by
its declaration (``read_as``), the report ranks it by its ``direction``. A name means the same in
every file it is in (the report's ``results.csv`` and ``sweep_folds.csv`` hold folds.csv rows).
This module imports nothing from segact, so every layer that writes or reads a column may import
it (``tests/test_layout.py`` treats it as part of the base).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import Enum


class Kind(str, Enum):
    """What a column is."""

    IDENTITY = "identity"  # names the run or the row: a choice, the seed, the fold, the epoch
    SETTING = "setting"  # a copy of a trainer setting
    RECORD = "record"  # bookkeeping text: the run's folder, hash, status, error, hardware
    METRIC = "metric"  # how good the fold's probabilities are
    TRAINING = "training"  # a number of the training itself: loss, gradient norm, learning rate
    COUNT = "count"  # images, pixels, epochs, confusion counts
    FLAG = "flag"  # True or False
    TIMING = "timing"  # seconds: they differ between two runs that agree in every number


class Dtype(str, Enum):
    """How a reader types a column."""

    TEXT = "text"  # as written (a hash of digits stays a hash)
    FLOAT = "float"  # float64
    INT = "int"  # integers as written (int64, float64 where a row has none)
    FLAG = "flag"  # True/False, 1/0 (an empty cell is False)


class Direction(str, Enum):
    """Which way a metric is better."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class Range:
    """The values a number may take; ``rule`` says why, in a reader's error."""

    low: float
    high: float
    rule: str


UNIT = Range(0.0, 1.0, "a Dice score, threshold or ECE lies in [0, 1]")
NONNEGATIVE = Range(0.0, math.inf, "an NLL, norm, rate or time is >= 0")
COUNTED = Range(0.0, math.inf, "a count or index is >= 0")
ANY_NUMBER = Range(-math.inf, math.inf, "a loss is a number")  # a boundary loss may be negative


@dataclass(frozen=True)
class Column:
    """One column of a result file."""

    name: str
    kind: Kind
    dtype: Dtype
    fills: str  # what writes it, and what it means
    range: Range | None = None  # numbers only; NaN (an empty cell) is always allowed
    direction: Direction | None = None  # metrics that rank
    values: frozenset[str] | None = None  # text with a closed vocabulary
    config_key: str | None = None  # the run's setting this column stores (its identity key)


@dataclass(frozen=True)
class Table:
    """The declared columns of one result file."""

    columns: tuple[Column, ...]

    def __iter__(self) -> Iterator[Column]:
        return iter(self.columns)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def names(self, *kinds: Kind) -> tuple[str, ...]:
        """The columns' names in declared order (of ``kinds`` only, where given)."""
        return tuple(c.name for c in self.columns if not kinds or c.kind in kinds)


def _text(name: str, kind: Kind, fills: str, values: frozenset[str] | None = None) -> Column:
    return Column(name, kind, Dtype.TEXT, fills, values=values)


def _int(name: str, kind: Kind, fills: str, config_key: str | None = None) -> Column:
    return Column(name, kind, Dtype.INT, fills, COUNTED, config_key=config_key)


def _choice(name: str, config_key: str) -> Column:
    return Column(name, Kind.IDENTITY, Dtype.TEXT, _CHOICE, config_key=config_key)


def _metric(
    name: str, fills: str, direction: Direction | None = Direction.HIGHER, value_range: Range = UNIT
) -> Column:
    return Column(name, Kind.METRIC, Dtype.FLOAT, fills, value_range, direction)


def _flag(name: str, fills: str) -> Column:
    return Column(name, Kind.FLAG, Dtype.FLAG, fills)


def _seconds(name: str, fills: str) -> Column:
    return Column(name, Kind.TIMING, Dtype.FLOAT, fills, NONNEGATIVE)


# --- names ----------------------------------------------------------------------------------

FOLD = "fold"
EPOCH = "epoch"
THRESHOLD = "threshold"
STATUS = "status"
BEST_DICE = "best_dice"
BEST_THRESHOLD = "best_threshold"
THRESHOLD_AVERAGED_DICE = "threshold_averaged_dice"
DICE_AT_05 = "dice_at_05"
DICE_PER_IMAGE = "dice_per_image"
DICE_PER_IMAGE_AT_05 = "dice_per_image_at_05"
DICE_PER_IMAGE_AT_BEST_THRESHOLD = "dice_per_image_at_best_threshold"
NLL = "nll"
ECE = "ece"
N_IMAGES = "n_images"
N_PIXELS = "n_pixels"
ARGMAX_DISAGREEMENTS = "argmax_disagreements"
ARGMAX_TIES = "argmax_ties"
ORACLE_BEST_DICE = "oracle_best_dice"
EPOCH_SELECTED = "epoch_selected"
EPOCHS_RUN = "epochs_run"
FAILED_EPOCH = "failed_epoch"
HIT_MAX_EPOCHS = "hit_max_epochs"
DEGENERATE = "degenerate"
ZERO_GRADIENT = "zero_gradient"
N_TRAIN = "n_train"
N_SELECT = "n_select"
N_REPORT = "n_report"
TRAIN_SECONDS = "train_seconds"
WALL_SECONDS = "wall_seconds"
TRAIN_LOSS = "train_loss"
GRAD_NORM = "grad_norm"
LR = "lr"
EPOCH_SECONDS = "epoch_seconds"
TP, FP, TN, FN = "tp", "fp", "tn", "fn"
DICE = "dice"
CELLS: tuple[str, ...] = (TP, FP, TN, FN)
"""The confusion counts, in the order the NLL split lists them."""

VALIDATION_PREFIX = "val_"
PAPER_PREFIX = "paper_"


def validation(name: str) -> str:
    """epochs.csv's name of a sweep metric measured on the images the epoch is chosen on."""
    return f"{VALIDATION_PREFIX}{name}"


def paper(name: str) -> str:
    """folds.csv's name of a metric under the paper's aggregation over epochs."""
    return f"{PAPER_PREFIX}{name}"


def mean_nll(cell: str) -> str:
    """thresholds.csv's mean NLL of the pixels of a confusion cell (``CELLS``)."""
    return f"mean_{NLL}_{cell}"


def paper_nll(cell: str) -> str:
    """thresholds.csv's summed NLL of a confusion cell's pixels over all pixels (the paper's)."""
    return paper(f"{NLL}_{cell}")


PAPER_BEST_DICE = paper(BEST_DICE)
PAPER_THRESHOLD_AVERAGED_DICE = paper(THRESHOLD_AVERAGED_DICE)
PAPER_NLL = paper(NLL)
VAL_BEST_DICE = validation(BEST_DICE)
VAL_BEST_THRESHOLD = validation(BEST_THRESHOLD)
VAL_THRESHOLD_AVERAGED_DICE = validation(THRESHOLD_AVERAGED_DICE)
VAL_NLL = validation(NLL)

# --- the files ------------------------------------------------------------------------------

SWEEP: tuple[Column, ...] = (
    _metric(BEST_DICE, "pooled Dice at the best threshold of the grid"),
    _metric(BEST_THRESHOLD, "the grid's threshold of the best pooled Dice", None),
    _metric(
        THRESHOLD_AVERAGED_DICE,
        "pooled Dice averaged over the threshold grid (the paper's total Dice)",
    ),
    _metric(DICE_AT_05, "pooled Dice at threshold 0.5 (in the grid or not)"),
    _metric(DICE_PER_IMAGE, "mean per-image Dice at the best threshold"),
    _metric(DICE_PER_IMAGE_AT_05, "mean per-image Dice at threshold 0.5"),
    _metric(
        NLL,
        "mean NLL over all pixels of p clipped to [eps, 1 - eps]",
        Direction.LOWER,
        NONNEGATIVE,
    ),
    _metric(ECE, "expected calibration error over equal-width bins", Direction.LOWER),
    _int(N_IMAGES, Kind.COUNT, "images swept"),
    _int(N_PIXELS, Kind.COUNT, "pixels swept"),
    _int(ARGMAX_DISAGREEMENTS, Kind.COUNT, "2-channel head: pixels where argmax != (p >= 0.5)"),
    _int(ARGMAX_TIES, Kind.COUNT, "2-channel head: pixels with z0 == z1 exactly"),
)
"""A threshold sweep's numbers (``segact.evaluation.sweep``): a fold reports its protocol's
sweep in folds.csv, and each epoch its selection sweep (``validation``) in epochs.csv."""

STATUSES = frozenset({"ok", "failed", "inconsistent"})
"""A fold row's status: finished, failed, or left out by a report (summary.json disagrees)."""
_CHOICE = "a named choice of the run (segact.runs.identity.CHOICES)"
_CHOICES_AS_WRITTEN: dict[str, str] = {
    "dataset": "dataset.name",
    "arch": "model.arch",
    "encoder": "model.encoder",
    "head": "head.name",
    "activation": "activation.name",
    "loss": "loss.name",
    "binarize": "loss.binarize",
    "protocol": "eval.protocol",
}
"""The choices as folds.csv writes them -> the setting each one stores."""

FOLDS = Table(
    (
        _text("experiment", Kind.IDENTITY, "the experiment's name (experiment_name)"),
        *(_choice(name, key) for name, key in _CHOICES_AS_WRITTEN.items()),
        _int("seed", Kind.IDENTITY, "trainer.seed", "trainer.seed"),
        _int("max_epochs", Kind.SETTING, "trainer.max_epochs", "trainer.max_epochs"),
        Column(LR, Kind.SETTING, Dtype.FLOAT, "trainer.lr", NONNEGATIVE, config_key="trainer.lr"),
        _int("batch_size", Kind.SETTING, "trainer.batch_size", "trainer.batch_size"),
        _text("run_dir", Kind.RECORD, "the run folder relative to its sweep folder"),
        _text("config_hash", Kind.RECORD, "the hash of the run's identity"),
        _int(FOLD, Kind.IDENTITY, "the fold's index"),
        _int(EPOCH_SELECTED, Kind.COUNT, "the epoch the protocol selected (eval.select_metric)"),
        _int(EPOCHS_RUN, Kind.COUNT, "epochs trained until early stopping or the cap"),
        *(
            replace(c, fills=f"{c.fills}: the fold's reported sweep (eval.protocol)")
            for c in SWEEP
            if c.name != DICE_PER_IMAGE
        ),
        _metric(ORACLE_BEST_DICE, "best Dice of the reported images at their own best threshold"),
        _metric(PAPER_BEST_DICE, "max over thresholds and epochs (generate_table.py)"),
        _metric(
            PAPER_THRESHOLD_AVERAGED_DICE,
            "max over epochs of the threshold-averaged Dice (generate_table.py)",
        ),
        _metric(
            PAPER_NLL,
            "min over epochs of the NLL (generate_table.py)",
            Direction.LOWER,
            NONNEGATIVE,
        ),
        _flag(HIT_MAX_EPOCHS, "stopped by trainer.max_epochs, not by early stopping"),
        _flag(DEGENERATE, "a trivial mask (nearly all or no foreground) at the reported threshold"),
        _int(N_TRAIN, Kind.COUNT, "images trained on"),
        _int(N_SELECT, Kind.COUNT, "images the epoch is selected on"),
        _int(N_REPORT, Kind.COUNT, "images reported on (the validation fold)"),
        _seconds(TRAIN_SECONDS, "the fold's training time"),
        _flag(ZERO_GRADIENT, "the gradient was exactly zero in every epoch"),
        _metric(DICE_PER_IMAGE_AT_BEST_THRESHOLD, "mean per-image Dice at the reported threshold"),
        _text("hardware", Kind.RECORD, "the device that trained the fold"),
        _text(STATUS, Kind.RECORD, "ok, or failed (a failed run's row)", STATUSES),
        _text("error", Kind.RECORD, "a failed run's error"),
        _int(FAILED_EPOCH, Kind.COUNT, "a failed run's epoch"),
        _seconds(WALL_SECONDS, "a run's wall-clock time (files of older versions)"),
        _text("run_path", Kind.RECORD, "the run folder, absolute (added by the report)"),
    ),
)
"""folds.csv: one row per fold, in the order the runner writes them (a failed run's row: its
keys, ``fold``, ``status``, ``error``, ``failed_epoch``). Under ``eval.protocol=holdout`` the
sweep's numbers are the untouched fold's, ``best_threshold`` the one chosen on the inner split
and ``best_dice`` the Dice at it."""

EPOCHS = Table(
    (
        _int(FOLD, Kind.IDENTITY, "the fold's index"),
        _int(EPOCH, Kind.IDENTITY, "the epoch, from 1"),
        Column(TRAIN_LOSS, Kind.TRAINING, Dtype.FLOAT, "mean training loss", ANY_NUMBER),
        Column(
            GRAD_NORM, Kind.TRAINING, Dtype.FLOAT, "the first batch's gradient norm", NONNEGATIVE
        ),
        Column(LR, Kind.TRAINING, Dtype.FLOAT, "the learning rate after the epoch", NONNEGATIVE),
        *(
            replace(c, name=validation(c.name), fills=f"{c.fills}: the selection images")
            for c in SWEEP
            if c.name != N_PIXELS
        ),
        _seconds(EPOCH_SECONDS, "the epoch's training and sweep time"),
    ),
)
"""epochs.csv: one row per fold x epoch trained."""

_CELL_NAMES = {TP: "true positive", FP: "false positive", TN: "true negative", FN: "false negative"}
THRESHOLDS = Table(
    (
        _int(FOLD, Kind.IDENTITY, "the fold's index"),
        Column(
            THRESHOLD, Kind.IDENTITY, Dtype.FLOAT, "the grid's threshold (eval.thresholds)", UNIT
        ),
        *(_int(cell, Kind.COUNT, f"{_CELL_NAMES[cell]} pixels") for cell in (TP, FP, FN, TN)),
        _metric(DICE, "pooled Dice at the threshold"),
        _metric(DICE_PER_IMAGE, "mean per-image Dice at the threshold"),
        *(
            _metric(mean_nll(c), f"mean NLL of the {_CELL_NAMES[c]} pixels", None, NONNEGATIVE)
            for c in CELLS
        ),
        *(
            _metric(
                paper_nll(c),
                f"summed NLL of the {_CELL_NAMES[c]} pixels over all pixels (the paper's)",
                None,
                NONNEGATIVE,
            )
            for c in CELLS
        ),
    ),
)
"""thresholds.csv: one row per fold x threshold of the reported sweep."""

TABLES: tuple[Table, ...] = (FOLDS, EPOCHS, THRESHOLDS)

SELECTED_METRICS: tuple[str, ...] = (
    BEST_DICE, THRESHOLD_AVERAGED_DICE, DICE_AT_05, BEST_THRESHOLD, NLL,
)  # fmt: skip
"""folds.csv's headline numbers at the fold's selected epoch, in the order summary.json and
segact-train's table give them."""
PAPER_METRICS: tuple[str, ...] = tuple(paper(m) for m in SELECTED_METRICS if paper(m) in FOLDS)
"""folds.csv's numbers under the paper's aggregation over epochs."""
FLAGS: tuple[str, ...] = tuple(c.name for c in FOLDS if c.dtype is Dtype.FLAG)
"""folds.csv's boolean flags of a fold."""
STORED_AS: Mapping[str, str] = {c.config_key: c.name for c in FOLDS if c.config_key}
"""A run's setting (its identity key, ``trainer.lr``) -> the folds.csv column that stores it
(``lr``): each setting is stored once, so a result frame has no dotted copy of these."""

# --- lookups --------------------------------------------------------------------------------


def _by_name() -> Mapping[str, Column]:
    columns: dict[str, Column] = {}
    for table in TABLES:
        for column in table:
            columns.setdefault(column.name, column)
    return columns


COLUMNS: Mapping[str, Column] = _by_name()
"""Every declared column by name (the first file's declaration where several files have it)."""


def read_as(name: str) -> Column | None:
    """How a reader types column ``name`` of any result file (by its current name:
    ``legacy.current_name``); None: segact writes no such column."""
    return COLUMNS.get(name)


def lower_is_better(name: str) -> bool:
    """Whether a lower value of metric ``name`` is better (NLL, ECE): the best epoch's is the
    minimum (early stopping, the paper's NLL), and so is a table's bold one."""
    column = COLUMNS.get(name)
    return column is not None and column.direction is Direction.LOWER


def ranked(name: str) -> bool:
    """Whether metric ``name`` has a better direction (a threshold has none)."""
    column = COLUMNS.get(name)
    return column is not None and column.direction is not None
