"""A run folder, writer and reader side by side: every file name of a run lives here (the result
files' columns in ``segact.runs.schema``), so whoever changes the layout changes both sides in
one place (as nnU-Net keeps its output folder's builder next to its parser).

```
<run_dir>/epochs.csv       one row per fold x epoch
<run_dir>/thresholds.csv   one row per fold x threshold at the selected epoch
<run_dir>/folds.csv        one row per fold: its numbers, the run's keys, config_hash, status
<run_dir>/summary.json     mean/std over folds, status (ok | failed), identity, files' digests
<run_dir>/splits.json      the cases each fold held out, as the run split them
<run_dir>/parts/           each finished fold's row and frames (joined into the files above)
<run_dir>/models/          each finished fold's weights (fold<k>.safetensors) and card (.json)
<run_dir>/checkpoints/     the fold in flight (removed when it finishes)
<run_dir>/locks/           who computes which fold now
<sweep_dir>/sweep_folds.csv  every run's folds, written when a multirun ends
```

Every file is written atomically (``segact.io``), so a killed process never leaves half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pandas as pd

from segact.errors import ModelError, ReportError
from segact.io import read_json, remove_temporaries_of, write_csv, write_json
from segact.runs import legacy, schema
from segact.runs.identity import predates

if TYPE_CHECKING:  # segact.data loads torch: the report reads run folders without it
    from segact.data.splits import Fold

log = logging.getLogger(__name__)

FOLDS_CSV = "folds.csv"
EPOCHS_CSV = "epochs.csv"
THRESHOLDS_CSV = "thresholds.csv"
SUMMARY_JSON = "summary.json"
SPLITS_JSON = "splits.json"
"""The case names each fold held out (validated on), as the run split them: the report's
overlays and anything else that needs a fold's cases read them here instead of splitting again.
In no run's identity and not among the digests of summary.json: it changes no reuse decision."""
RESULT_FILES: tuple[str, ...] = (FOLDS_CSV, EPOCHS_CSV, THRESHOLDS_CSV)
"""The files summary.json records (rows and SHA-256), so that a damaged one is noticed."""
PARTS_DIR = "parts"
CHECKPOINTS_DIR = "checkpoints"
MODELS_DIR = "models"
"""Each finished fold's weights at its reported epoch and the card that says how to apply them."""
LOCKS_DIR = "locks"
SWEEP_FOLDS_CSV = "sweep_folds.csv"
"""In the sweep folder: every run's folds.csv rows, written when a multirun ends."""


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def summary_numbers(
    folds: pd.DataFrame, metrics: Sequence[str] = (*schema.SELECTED_METRICS, *schema.PAPER_METRICS)
) -> dict[str, float]:
    """Mean and std over folds of each metric (NaN values left out), for summary.json."""
    present = [m for m in metrics if m in folds.columns]
    values = folds[present].apply(pd.to_numeric, errors="coerce")
    out: dict[str, float] = {}
    for metric in present:
        column = values[metric]
        out[f"{metric}_mean"] = float(column.mean())
        out[f"{metric}_std"] = float(column.std()) if column.count() > 1 else 0.0
    return out


def summary_mean(summary: dict[str, Any], metric: str) -> Any:
    """A summary.json's mean of ``metric`` over folds (``summary_numbers``), under its former
    name (``legacy.former_names``) where an older run recorded that; None without either."""
    names = (metric, *legacy.former_names(metric))
    return next((summary[f"{m}_mean"] for m in names if f"{m}_mean" in summary), None)


FLAG_SPELLINGS = frozenset({"true", "false", "1", "0", "1.0", "0.0"})
"""How a flag (``schema.Dtype.FLAG``) may be written; an empty cell is False."""
READ_CHUNK_ROWS = 20_000
"""Rows parsed and checked at a time: a file of junk fails at its first chunk, not after all
of it is in memory."""
MAX_RESULT_ROWS = 200_000
"""More rows than any result file has (a thresholds.csv: folds x thresholds; an epochs.csv:
folds x epochs; a results.csv: runs x folds): beyond, the file is refused as not one."""


def _declared(column: str) -> schema.Column | None:
    """How the readers type ``column`` (``schema.read_as``, a former name as its current one);
    None: it is not read."""
    return None if "." in column else schema.read_as(legacy.current_name(column))


def _is_read(column: str) -> bool:
    """The columns the report reads: every declared one, and the dotted identity columns
    (``trainer.lr``), as text."""
    return "." in column or _declared(column) is not None


def stored_copies(columns: Iterable[str]) -> set[str]:
    """The dotted keys that are copies of a setting one of ``columns`` stores (``trainer.lr``
    beside ``lr``; results.csv files written before 2026-12-08 kept both): each setting is read
    once, as the column."""
    present = set(columns)
    return {key for key, column in schema.STORED_AS.items() if column in present}


_NOT_READ: set[tuple[str, ...]] = set()
"""The sets of unknown columns a warning named already (once each, not once per run folder)."""


def _not_read(columns: tuple[str, ...], path: Path) -> None:
    """Says which columns of a result file are not read (no segact version wrote them)."""
    if columns not in _NOT_READ:
        _NOT_READ.add(columns)
        log.warning(
            "%s: column(s) %s are not in segact's result schema (segact.runs.schema): not read "
            "(here or in any other file)",
            path,
            ", ".join(columns),
        )


def _where(path: Path, chunk: pd.DataFrame, bad: pd.Series, column: str) -> str:
    first = chunk.index[bad.fillna(False).to_numpy(dtype=bool)][0]
    row = int(first) + 1  # the header is row 0, on line 1
    value = chunk.at[first, column]
    shown = repr(value) if isinstance(value, str) else str(value)
    return f"{path}, row {row} (line {row + 1}), column {column}: {shown}"


def _checked_number(
    path: Path, chunk: pd.DataFrame, column: str, declared: schema.Column
) -> pd.Series:
    """``chunk[column]`` as numbers (floats unless integers), or a ReportError naming the first
    value that is text or out of range."""
    values = chunk[column]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    numbers = values if numeric else pd.to_numeric(values.astype("string"), errors="coerce")
    text = numbers.isna() & values.notna()
    if text.any():
        where = _where(path, chunk, text, column)
        raise ReportError(f"{where} is not a number; correct or delete that row")
    assert declared.range is not None
    outside = (numbers < declared.range.low) | (numbers > declared.range.high)
    if outside.any():
        where = _where(path, chunk, outside, column)
        rule = declared.range.rule
        raise ReportError(f"{where} is out of range ({rule}); correct or delete that row")
    return numbers if declared.dtype is schema.Dtype.INT else numbers.astype("float64")


def _checked_chunk(path: Path, chunk: pd.DataFrame) -> pd.DataFrame:
    """The chunk with typed numbers (each column as ``schema`` declares it); a ReportError at
    its first unusable value: numbers first, then flags, then closed vocabularies."""
    declared = {c: d for c in chunk.columns if (d := _declared(c)) is not None}
    for column, how in declared.items():
        if how.range is not None:
            chunk[column] = _checked_number(path, chunk, column, how)
    for column in (c for c, how in declared.items() if how.dtype is schema.Dtype.FLAG):
        spelled = chunk[column].astype("string").str.lower()
        bad = spelled.notna() & ~spelled.isin(FLAG_SPELLINGS)
        if bad.any():
            where = _where(path, chunk, bad, column)
            raise ReportError(f"{where} is no flag (True or False); correct or delete that row")
    for column, values in ((c, how.values) for c, how in declared.items() if how.values):
        bad = chunk[column].notna() & ~chunk[column].isin(values)
        if bad.any():
            where = _where(path, chunk, bad, column)
            raise ReportError(f"{where} is no {column} ({', '.join(sorted(values))})")
    return chunk


class _HashingReader(io.RawIOBase):
    """A binary file that hashes (SHA-256) what is read from it: a result file is checked
    against its recorded digest in the same pass that parses it, not read a second time."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        self.sha256.update(memoryview(buffer)[:n])
        return n


def read_result_csv(path: Path) -> pd.DataFrame:
    """A result CSV, only the columns ``segact.runs.schema`` declares (and the dotted identity
    columns; any other is named in a warning), text columns as written, numbers typed and
    checked chunk by chunk, so that a file of junk fails fast with one line naming its row and
    column; the columns of older versions under today's names (``legacy.LEGACY_NAMES``)."""
    return read_hashed_result_csv(path)[0]


def read_hashed_result_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """``read_result_csv`` and the SHA-256 of the file's bytes, both from one read."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        read = [c for c in header if _is_read(c)]
        if len(read) < len(header):
            _not_read(tuple(c for c in header if not _is_read(c)), Path(path))
        copies = stored_copies(header)
        read = [c for c in read if c not in copies]
        text = {c: str for c in read if (d := _declared(c)) is None or d.dtype is schema.Dtype.TEXT}
        chunks = []
        with open(path, "rb") as raw:
            hashing = _HashingReader(raw)
            with pd.read_csv(
                io.BufferedReader(hashing), usecols=read, dtype=text, chunksize=READ_CHUNK_ROWS
            ) as reader:
                for chunk in reader:
                    chunks.append(_checked_chunk(path, chunk))
                    if len(chunk) and chunk.index[-1] >= MAX_RESULT_ROWS:
                        raise ReportError(
                            f"{path} has more than {MAX_RESULT_ROWS} rows: no segact result file "
                            "is that long; is it the right file?"
                        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ReportError(f"cannot read {path}: {error}") from None
    frame = pd.concat(chunks) if len(chunks) > 1 else chunks[0]
    return legacy.current_columns(frame), hashing.sha256.hexdigest()


def recorded_sha256(summary: dict[str, Any], name: str) -> str | None:
    """The SHA-256 a run's summary.json recorded of its result file ``name`` when the run
    finished; None where it recorded none (a summary that predates the digests, or no ok one)."""
    files = summary.get("files")
    record = files.get(name) if isinstance(files, dict) else None
    digest = record.get("sha256") if isinstance(record, dict) else None
    return digest if isinstance(digest, str) else None


@dataclass
class ResultEdits:
    """The result files read whose bytes differ from the SHA-256 their run's summary.json
    recorded when the run finished: edited since (by hand or by a tool), so their numbers are
    not the run's. Readers collect them (``check``); the report refuses them unless it was told
    to trust them (``notes``)."""

    trust: bool = False
    edited: list[Path] = field(default_factory=list)

    def check(self, path: Path, summary: dict[str, Any], digest: str) -> None:
        recorded = recorded_sha256(summary, Path(path).name)
        if recorded is not None and recorded != digest and path not in self.edited:
            self.edited.append(path)

    def notes(self) -> list[str]:
        """Nothing where no file was edited; with ``trust``, a note naming the edited files;
        else a ReportError naming the first."""
        if not self.edited:
            return []
        if not self.trust:
            more = len(self.edited) - 1
            also = f" (and {more} more result file(s))" if more else ""
            raise ReportError(
                f"{self.edited[0]}{also} differs from the SHA-256 its run's summary.json recorded "
                "when the run finished (edited since?): restore it, or run that configuration "
                "again (segact-train recomputes a run whose files changed), or pass "
                "--trust-edits to read it as it is"
            )
        return [
            f"--trust-edits: {len(self.edited)} result file(s) differ from the SHA-256 their "
            "run's summary.json recorded when the run finished and were read as they are now: "
            f"{', '.join(map(str, self.edited))}."
        ]


def _as_text(value: Any) -> Any:
    """An identity value as the text results.csv keeps (NaN where the run has no such key), so a
    report read back from results.csv groups exactly as one read from the run folders."""
    if value is None:
        return np.nan
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def column_or_nan(frame: pd.DataFrame, name: str) -> pd.Series:
    """The column, or all NaN where the frame has none."""
    return frame.get(name, pd.Series(np.nan, index=frame.index, dtype=object))


def _is_temporary(name: str) -> bool:
    """An atomic writer's temporary (``segact.io``: ``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def unusable_root(folder: Path) -> str | None:
    """Why ``folder`` may not hold segact's run or sweep folders (None: it may): the
    filesystem root or a home directory, where a run would scatter its files among others'."""
    resolved = Path(folder).expanduser().resolve()
    homes = {Path.home().resolve(), *Path("/home").glob("*")} if Path("/home").is_dir() else set()
    if resolved == Path(resolved.anchor):
        return "is the filesystem root"
    if resolved in {Path.home().resolve(), *(h.resolve() for h in homes)}:
        return "is a home directory"
    return None


def run_folders(sweep_dir: Path) -> list[RunFolder]:
    """Every run folder below ``sweep_dir`` (each one that has a folds.csv), sorted."""
    return [RunFolder(path.parent) for path in sorted(Path(sweep_dir).rglob(FOLDS_CSV))]


@dataclass(frozen=True)
class RunFolder:
    """The folder of one run: where each of its files lies, how it is written and read."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def folds_csv(self) -> Path:
        return self.path / FOLDS_CSV

    @property
    def epochs_csv(self) -> Path:
        return self.path / EPOCHS_CSV

    @property
    def thresholds_csv(self) -> Path:
        return self.path / THRESHOLDS_CSV

    @property
    def summary_json(self) -> Path:
        return self.path / SUMMARY_JSON

    @property
    def splits_json(self) -> Path:
        return self.path / SPLITS_JSON

    def checkpoint(self, fold: int) -> Path:
        return self.path / CHECKPOINTS_DIR / f"fold{fold}.pt"

    def model_weights(self, fold: int) -> Path:
        return self.path / MODELS_DIR / f"fold{fold}.safetensors"

    def model_card(self, fold: int) -> Path:
        return self.path / MODELS_DIR / f"fold{fold}.json"

    def fold_lock(self, fold: int) -> Path:
        return self.path / LOCKS_DIR / f"fold{fold}.lock"

    @property
    def run_lock(self) -> Path:
        return self.path / LOCKS_DIR / "run.lock"

    def foreign_entries(self) -> list[str]:
        """What in this folder segact did not write: anything but the run's own files, Hydra's
        ``.hydra/`` and job log, and temporaries; and result files with neither a summary.json
        nor finished folds beside them (someone else's ``folds.csv``)."""
        if not self.path.is_dir():
            return []
        own = {*RESULT_FILES, SUMMARY_JSON, SPLITS_JSON, PARTS_DIR, CHECKPOINTS_DIR, LOCKS_DIR}
        own |= {MODELS_DIR, ".hydra"}
        foreign = sorted(
            p.name
            for p in self.path.iterdir()
            if p.name not in own and p.suffix != ".log" and not _is_temporary(p.name)
        )
        results = [name for name in RESULT_FILES if (self.path / name).exists()]
        ours = self.summary_json.exists() or (self.path / PARTS_DIR).is_dir()
        return foreign + ([] if ours else results)

    # --- writing ---------------------------------------------------------------------------

    def remove_temporaries(self) -> None:
        """Delete what killed writers of the run's files left behind (hold the run's lock)."""
        for name in (*RESULT_FILES, SUMMARY_JSON):
            remove_temporaries_of(self.path / name)

    def write_results(
        self, epochs: pd.DataFrame, thresholds: pd.DataFrame, folds: pd.DataFrame
    ) -> None:
        """The three result files, folds.csv last."""
        self.write_epochs(epochs)
        self.write_thresholds(thresholds)
        self.write_folds(folds)

    def write_epochs(self, epochs: pd.DataFrame) -> None:
        write_csv(epochs, self.epochs_csv)

    def write_thresholds(self, thresholds: pd.DataFrame) -> None:
        write_csv(thresholds, self.thresholds_csv)

    def write_folds(self, folds: pd.DataFrame) -> None:
        write_csv(folds, self.folds_csv)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json; an ok one records the rows and SHA-256 of each result file last (a run
        is finished only when all of them are recorded and intact: ``finished_summary``)."""
        if summary.get("status") == "ok":
            summary["files"] = self.file_records()
        write_json(summary, self.summary_json)

    def write_splits(
        self, cases: np.ndarray, folds: Sequence[Fold], seed: int, shuffle: bool
    ) -> None:
        """splits.json: per fold, the names of the cases it held out (``cases[fold.val]``); the
        seed and shuffle the split was made with, for the reader's eye."""
        held_out = [
            {"fold": fold.index, "held_out": np.unique(cases[fold.val]).tolist()} for fold in folds
        ]
        write_json({"seed": seed, "shuffle": shuffle, "folds": held_out}, self.splits_json)

    def write_failure(self, summary: dict[str, Any], keys: dict[str, Any]) -> None:
        """summary.json says failed, and folds.csv gains a failed row (numbered after the ok
        rows; a retried run's earlier failed row is dropped), so reports list the run."""
        write_json(summary, self.summary_json)
        previous = pd.read_csv(self.folds_csv) if self.folds_csv.exists() else pd.DataFrame()
        if "status" in previous.columns:
            previous = previous[previous["status"] == "ok"]
        row = {**keys, "fold": len(previous), "status": "failed", "error": summary["error"]}
        row[schema.FAILED_EPOCH] = summary["epoch"]
        write_csv(pd.concat([previous, pd.DataFrame([row])], ignore_index=True), self.folds_csv)

    def remove_lock_folder(self) -> None:
        with contextlib.suppress(OSError):  # other processes may still hold locks there
            (self.path / LOCKS_DIR).rmdir()

    def file_records(self) -> dict[str, dict[str, Any]]:
        """What summary.json records of each result file there is, so a damaged one is noticed."""
        records = {}
        for name in RESULT_FILES:
            if not (self.path / name).exists():
                continue
            text = (self.path / name).read_bytes()
            records[name] = {
                "rows": max(0, text.count(b"\n") - 1),
                "sha256": hashlib.sha256(text).hexdigest(),
            }
        return records

    # --- reading ---------------------------------------------------------------------------

    def read_summary(self) -> dict[str, Any]:
        """summary.json, or {} where there is none (an older or interrupted run) or it is bad."""
        try:
            summary = read_json(self.summary_json)
        except (OSError, ValueError):
            return {}
        return summary if isinstance(summary, dict) else {}

    def finished_summary(
        self, config_hash: str, current: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The run's summary.json if it says ok, was written under the same identity (or one
        that ``current`` only extends by keys added since, see ``identity.predates``), and every
        result file it lists is present and unchanged; otherwise None (the run is redone)."""
        summary = self.read_summary()
        if summary.get("status") != "ok":
            return None
        if summary.get("config_hash") != config_hash:
            added = predates(summary.get("identity", {}), current) if current else None
            if not added:
                return None
            log.info(
                "%s predates the settings %s; their defaults keep it finished", self.path, added
            )
        for name, record in summary.get("files", {}).items():
            try:
                digest = file_digest(self.path / name)
            except OSError:
                log.warning("%s: %s is missing; the run is computed again", self.path, name)
                return None
            if digest != record.get("sha256"):
                log.warning(
                    "%s: %s changed since the run finished; computed again", self.path, name
                )
                return None
        return summary if set(RESULT_FILES) <= set(summary.get("files", {})) else None

    def held_out(
        self, fold: int, cases: np.ndarray, n_folds: int, seed: int, shuffle: bool
    ) -> np.ndarray:
        """The image indices fold ``fold`` held out: the images of the cases splits.json names
        for it. A run folder from before splits.json (none there, as every run under
        results/runs/) splits again as its run did (``case_folds`` with the run's folds, seed
        and shuffle), which gives the same cases: this is the only place a split is redone."""
        try:
            recorded = {f["fold"]: f["held_out"] for f in read_json(self.splits_json)["folds"]}
            names = [str(case) for case in recorded[fold]]
        except FileNotFoundError:  # an older run: split as it did
            from segact.data.splits import case_folds  # torch: only for this

            return case_folds(cases, n_folds, seed, shuffle)[fold].val
        except (OSError, ValueError, LookupError, TypeError) as error:
            raise ModelError(
                f"{self.splits_json} cannot be read ({type(error).__name__}: {error}): delete "
                "it, and the run's split is made again from its seed"
            ) from None
        spelled = np.asarray(cases).astype(str)
        missing = sorted(set(names) - set(spelled))
        if missing:
            raise ModelError(
                f"{self.splits_json}: fold {fold} held out cases the dataset has no longer "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
            )
        return np.flatnonzero(np.isin(spelled, names))

    def superseded_identity(self, config_hash: str) -> dict[str, Any] | None:
        """The identity of a finished run of *another* configuration in this folder, if any."""
        summary = self.read_summary()
        if summary.get("status") == "ok" and summary.get("config_hash") != config_hash:
            return summary.get("identity", {})
        return None

    def read_folds(self, edits: ResultEdits | None = None) -> pd.DataFrame:
        """folds.csv with ``run_path`` (this folder, absolute) and the summary's identity as
        columns named by the dotted key (a top-level key ``k`` as ``config.k``), values as text
        (lists as JSON): they let tables split rows by every setting that differs between runs
        and let the paired statistics pair only runs equal in everything but the activation.
        With ``edits``, the file is checked against its digest in summary.json (so are the
        other readers' files)."""
        summary = self.read_summary()
        folds = self._read(FOLDS_CSV, edits, summary)
        copies = stored_copies(folds.columns)  # folds.csv's own column stores them (``lr``)
        identity = {
            key if "." in key else f"config.{key}": _as_text(value)  # a top-level key: no clash
            for key, value in summary.get("identity", {}).items()
            if key not in copies
        }
        folds = folds.assign(run_path=self.run_path, **identity)
        if summary.get("config_hash"):
            folds["config_hash"] = column_or_nan(folds, "config_hash").fillna(
                summary["config_hash"]
            )
        return folds

    def read_thresholds(self, edits: ResultEdits | None = None) -> pd.DataFrame:
        """thresholds.csv with ``run_path``; empty where the run has none."""
        if not self.thresholds_csv.exists():
            return pd.DataFrame()
        return self._read(THRESHOLDS_CSV, edits).assign(run_path=self.run_path)

    def read_epochs(self, edits: ResultEdits | None = None) -> pd.DataFrame:
        """epochs.csv with ``run_path``; empty where the run has none."""
        if not self.epochs_csv.exists():
            return pd.DataFrame()
        return self._read(EPOCHS_CSV, edits).assign(run_path=self.run_path)

    def _read(
        self, name: str, edits: ResultEdits | None, summary: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame, digest = read_hashed_result_csv(self.path / name)
        if edits is not None:
            summary = self.read_summary() if summary is None else summary
            edits.check(self.path / name, summary, digest)
        return frame

    @property
    def run_path(self) -> str:
        return str(self.path.resolve())


class FoldRecords:
    """Finished folds of a run, one set of files each in ``parts/``: ``fold<k>.json`` (the fold's
    row and notes, written last), ``fold<k>.epochs.csv`` and ``fold<k>.thresholds.csv``."""

    def __init__(self, run: RunFolder, config_hash: str) -> None:
        self.folder = run.path / PARTS_DIR
        self.config_hash = config_hash

    def _path(self, fold: int, kind: str) -> Path:
        return self.folder / f"fold{fold}.{kind}"

    def load(self, fold: int) -> dict[str, Any] | None:
        """The fold's record if it finished under this identity and its files are intact."""
        try:
            record = read_json(self._path(fold, "json"))
            intact = all(
                file_digest(self._path(fold, f"{kind}.csv")) == record["sha256"][kind]
                for kind in ("epochs", "thresholds")
            )
        except (OSError, ValueError, KeyError):
            return None
        return record if intact and record.get("config_hash") == self.config_hash else None

    def save(
        self,
        fold: int,
        frames: tuple[pd.DataFrame, pd.DataFrame],
        row: dict[str, Any],
        notes: list[str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """``frames``: the fold's (epochs, thresholds); ``row``: its folds.csv row; ``extra``:
        more of the record (the hash of the fold's saved model)."""
        digests = {}
        for kind, frame in zip(("epochs", "thresholds"), frames, strict=True):
            write_csv(frame, self._path(fold, f"{kind}.csv"))
            digests[kind] = file_digest(self._path(fold, f"{kind}.csv"))
        record = {"config_hash": self.config_hash, "row": row, "notes": notes, **(extra or {})}
        write_json({**record, "sha256": digests}, self._path(fold, "json"))

    def frames(self, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        epochs, thresholds = (
            pd.read_csv(self._path(fold, f"{kind}.csv")) for kind in ("epochs", "thresholds")
        )
        return epochs, thresholds
