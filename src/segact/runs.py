"""What identifies a run, in one place: its keys, its identity and hash, its folder name, the
locks that let several processes share a sweep, and the "finished?" check.

A run's *identity* is every setting that can change its numbers: the resolved config without
the ``runtime`` node (progress bars, checkpoint interval, lock timeout: nothing that changes a
number), without ``paths`` and the loader-only dataset keys (where the files are, whether the
decoded arrays are cached), and without ``trainer.fold`` (which fold a job computes), plus what
the config leaves to the machine: the device type, and the torch thread count on CPU (float
reductions depend on it). Two runs with the same identity give the same CSVs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segact.config import plain
from segact.io import read_json

log = logging.getLogger(__name__)

RUNTIME_NODE = "runtime"
NOT_IN_IDENTITY: tuple[str, ...] = (
    RUNTIME_NODE,
    "paths",
    "experiment_name",
    "hydra",
    "trainer.fold",
    "trainer.device",  # as resolved.device: auto and cpu are the same run on a CPU machine
    "trainer.threads",  # as resolved.threads: 0 means every core
    "dataset.default_root",
    "dataset.cache",
    "dataset.cache_dir",
    "dataset.workers",
)
"""Dotted keys (or whole nodes) that change no number; every other key is part of a run."""

IN_FOLDER_NAME: tuple[str, ...] = (
    "dataset",
    "model",
    "model.arch",
    "model.encoder",
    "head",
    "activation",
    "loss",
    "loss.binarize",
    "trainer.seed",
)
"""Choices the folder name spells out in its path (configs/config.yaml ``hydra.sweep.subdir``)."""
NOT_IN_FOLDER_NAME: tuple[str, ...] = ("experiment", "launcher", "combination", "+combination")
RESULT_FILES: tuple[str, ...] = ("folds.csv", "epochs.csv", "thresholds.csv")
SUMMARY_FILE = "summary.json"
LOCK_FOLDER = "locks"


def run_keys(cfg: DictConfig) -> dict[str, Any]:
    """The run's main choices, as columns of every result row."""
    return {
        "experiment": cfg.get("experiment_name", "default"),
        "dataset": cfg.dataset.name,
        "arch": cfg.model.arch,
        "encoder": cfg.model.encoder,
        "head": plain(cfg.head.name),
        "activation": cfg.activation.name,
        "loss": cfg.loss.name,
        "binarize": plain(cfg.loss.get("binarize", "none")),
        "protocol": plain(cfg.eval.protocol),
        "seed": int(cfg.trainer.seed),
        "max_epochs": int(cfg.trainer.max_epochs),
        "lr": float(cfg.trainer.lr),
        "batch_size": int(cfg.trainer.batch_size),
    }


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat if flat or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _excluded(key: str) -> bool:
    return any(key == skip or key.startswith(f"{skip}.") for skip in NOT_IN_IDENTITY)


def identity(cfg: DictConfig, device_type: str, threads: int) -> dict[str, Any]:
    """Flat {dotted key: value} of every setting that changes the run's numbers."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    flat = {k: v for k, v in _flatten(container).items() if not _excluded(k)}
    flat["resolved.device"] = device_type
    if device_type == "cpu":
        flat["resolved.threads"] = threads
    return dict(sorted(flat.items()))


def config_hash(ident: dict[str, Any]) -> str:
    text = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


# --- the folder name --------------------------------------------------------------------------


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def folder_suffix(overrides: Sequence[str]) -> str:
    """The overrides that are not yet part of the folder's path and that change numbers, as
    ``key=value,key=value`` (Hydra's override_dirname, minus the runtime node as a whole)."""
    kept = sorted(
        o
        for o in overrides
        if (key := _override_key(o)) not in IN_FOLDER_NAME
        and key not in NOT_IN_FOLDER_NAME
        and not key.startswith("hydra.")
        and not _excluded(key)
    )
    return ",".join(o.replace("/", "_") for o in kept)


OmegaConf.register_new_resolver(
    "segact_folder_suffix", lambda overrides: folder_suffix(list(overrides)), replace=True
)


# --- result files and "finished?" ---------------------------------------------------------------


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """What summary.json records of each result file, so a damaged file is noticed."""
    records = {}
    for name in RESULT_FILES:
        text = (Path(run_dir) / name).read_bytes()
        records[name] = {
            "rows": max(0, text.count(b"\n") - 1),
            "sha256": hashlib.sha256(text).hexdigest(),
        }
    return records


def predates(recorded: dict[str, Any], current: dict[str, Any]) -> list[str] | None:
    """The keys ``current`` adds to ``recorded`` when every recorded setting is unchanged (the
    run predates those keys), else None. A key added to a schema must default to the behaviour
    from before it existed, so that finished runs stay finished (their CSVs would be the same)."""
    if any(key not in current or current[key] != value for key, value in recorded.items()):
        return None
    return sorted(set(current) - set(recorded))


def finished_summary(
    run_dir: Path, fingerprint: str, current: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The run's summary.json if it says ok, was written under the same identity (or one that
    ``current`` only extends by keys added since, see ``predates``), and every result file it
    lists is present and unchanged; otherwise None (the run is redone)."""
    run_dir = Path(run_dir)
    try:
        summary = read_json(run_dir / SUMMARY_FILE)
    except (OSError, ValueError):
        return None
    if summary.get("status") != "ok":
        return None
    if summary.get("config_hash") != fingerprint:
        added = predates(summary.get("identity", {}), current) if current else None
        if not added:
            return None
        log.info("%s predates the settings %s; their defaults keep it finished", run_dir, added)
    for name, record in summary.get("files", {}).items():
        try:
            digest = file_digest(run_dir / name)
        except OSError:
            log.warning("%s: %s is missing; the run is computed again", run_dir, name)
            return None
        if digest != record.get("sha256"):
            log.warning("%s: %s changed since the run finished; computed again", run_dir, name)
            return None
    return summary if summary.get("files") else None


def superseded_identity(run_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The identity of a finished run of *another* configuration in ``run_dir``, if any."""
    try:
        summary = read_json(Path(run_dir) / SUMMARY_FILE)
    except (OSError, ValueError):
        return None
    if summary.get("status") == "ok" and summary.get("config_hash") != fingerprint:
        return summary.get("identity", {})
    return None


# --- locks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lock:
    """A lock file holding its owner's host and pid; see ``acquire``."""

    path: Path

    def refresh(self) -> None:
        """Mark the lock as alive (its modification time is the heartbeat)."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path, stale_after_s: float) -> bool:
    """A lock of a dead process on this host, or one without a heartbeat for too long."""
    try:
        holder = read_json(path)
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return True  # unreadable or half written: the writer died before finishing it
    if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1))):
        return True
    return age > stale_after_s


def acquire(path: Path, stale_after_s: float) -> Lock | None:
    """Take the lock at ``path`` (None when another live process holds it).

    The lock appears with its holder already written in it (a temporary file hard-linked into
    place, which fails if the lock exists): a lock created empty and filled afterwards could be
    read half written by another process, taken for a dead writer's and removed."""
    path = Path(path)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    for _ in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            draft.write_text(json.dumps(holder))
            os.link(draft, path)
        except FileNotFoundError:  # another process removed the empty lock folder just now
            continue
        except FileExistsError:
            if not is_stale(path, stale_after_s):
                return None
            log.warning("removing the stale lock %s", path)
            path.unlink(missing_ok=True)
            continue
        finally:
            draft.unlink(missing_ok=True)
        return Lock(path)
    return None


@contextlib.contextmanager
def holding(path: Path, stale_after_s: float, wait_s: float = 60.0) -> Iterator[Lock]:
    """Hold the lock at ``path`` for a short critical section, waiting for it if needed."""
    deadline = time.monotonic() + wait_s
    while (lock := acquire(path, stale_after_s)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} is held by another process for more than {wait_s:.0f} s")
        time.sleep(0.1)
    try:
        yield lock
    finally:
        lock.release()


def fold_lock_path(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / LOCK_FOLDER / f"fold{fold}.lock"


def run_lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FOLDER / "run.lock"
