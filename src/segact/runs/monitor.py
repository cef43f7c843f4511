"""What a run says while it trains (listeners of ``segact.training.engine.FoldSetup``): one log
line per epoch, the time left after the first epoch of each fold and at each run's start in a
sweep (from the median epoch time of the runs of its kind so far, and where the run stands in its
sweep), a warning when a CPU faces a configuration above the suggested quick look, and the
experiment tracker of ``logger=`` (``segact.runs.loggers``), told when each fold ends.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from segact.config import config_dir, instantiate_named
from segact.data.base import SegmentationData
from segact.runs import schema
from segact.runs.folder import FoldRecords, RunFolder
from segact.runs.loggers import Tracker
from segact.runs.sweep_folder import sweep_values
from segact.training.engine import EpochListener

log = logging.getLogger("segact")

LIKELY_PATIENCE_MULTIPLE = 4
"""Before a fold of the run has finished, a fold is likely to stop near this many times
``trainer.patience`` epochs: the committed paper-schedule folds (patience 11, results/runs)
stopped at a median epoch of 43."""
LARGE_RUN_S = 1800.0
"""A run that may take longer than this on a CPU gets the warning (as do big images below)."""
LARGE_IMAGE_PX = 128
QUICK_LOOK_PX = 48
QUICK_LOOK = f"model=tiny dataset.image_size={QUICK_LOOK_PX}"
"""The size the CPU warning suggests; a run at it (or smaller) is never warned."""
WARNED: set[str] = set()
"""Warnings given once per process (a sweep under the basic launcher is one process)."""


def duration(seconds: float) -> str:
    """``4.2 s``, ``42 s``, ``17 min``, ``3 h 05 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(frozen=True)
class Estimate:
    upper_s: float  # every fold runs to trainer.max_epochs
    likely_s: float  # every fold stops near likely_epochs


def estimate_left(
    epoch_s: float,
    epoch: int,
    max_epochs: int,
    folds_after: int,
    likely_epochs: float,
    fold_s: float = 0.0,
) -> Estimate:
    """Time left after ``epoch`` of a fold, at ``epoch_s`` a epoch and ``fold_s`` a fold besides
    its epochs (building, final evaluation, saving), with ``folds_after`` folds still to start:
    at most to ``max_epochs`` each, likely to ``likely_epochs`` each."""
    likely_epochs = min(float(max_epochs), likely_epochs)
    extra = fold_s * (1 + folds_after)
    upper = epoch_s * ((max_epochs - epoch) + folds_after * max_epochs) + extra
    likely = epoch_s * (max(likely_epochs - epoch, 0.0) + folds_after * likely_epochs) + extra
    return Estimate(upper, min(likely, upper))


@dataclass
class Pace:
    """The times of the runs of one kind (model, input size, batch, device) seen so far: in a
    sweep every run of the kind in this process adds to one, so estimates settle instead of
    starting again from a guess at each run."""

    epoch_s: list[float] = field(default_factory=list)  # every epoch's
    fold_epochs: list[int] = field(default_factory=list)  # each ended fold's last epoch
    fold_s: list[float] = field(default_factory=list)  # each ended fold's time besides epochs

    def epoch_time(self) -> float:
        """The median epoch: a fold's slow first epoch or a busy moment does not swing it."""
        return statistics.median(self.epoch_s)

    def fold_time(self) -> float:
        return statistics.median(self.fold_s) if self.fold_s else 0.0

    def likely_epochs(self, plan: RunPlan) -> tuple[float, str]:
        """Where folds likely stop, and why that number."""
        if self.fold_epochs:
            likely = statistics.mean(self.fold_epochs)
            return likely, f"as the folds so far: {likely:.0f} epochs"
        likely = LIKELY_PATIENCE_MULTIPLE * plan.patience
        return likely, f"if early stopping ends folds near epoch {min(likely, plan.max_epochs)}"


PACES: dict[tuple[str, str], Pace] = {}
"""The paces of this process's sweeps, by (sweep folder, run kind)."""


@dataclass(frozen=True)
class SweepPosition:
    run: int  # 1-based: Hydra's job number + 1
    of: int | None  # jobs in the sweep, when multirun.yaml tells


def jobs_in_sweep(sweep_dir: Path) -> int | None:
    """The number of jobs of the sweep whose multirun.yaml (Hydra writes it before the first
    job) is in ``sweep_dir``; None when it cannot be told (no file, a glob sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        saved = OmegaConf.load(sweep_dir / "multirun.yaml").hydra
        params = saved.sweeper.params
        params = {} if params is None else OmegaConf.to_container(params)
        lines = [*(f"{k}={v}" for k, v in params.items()), *saved.overrides.task]
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception:  # no file, someone else's, unparsable: the count is only informative
        return None
    counts: dict[str, int | None] = {}
    for override in overrides:  # a command-line key replaces an experiment file's
        values = sweep_values(override) if override.is_sweep_override() else [""]
        counts[override.get_key_element()] = None if values is None else len(values)
    return None if None in counts.values() else math.prod(counts.values())  # type: ignore[arg-type]


def sweep_position() -> SweepPosition | None:
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    return SweepPosition(int(hydra_cfg.job.num) + 1, jobs_in_sweep(Path(hydra_cfg.sweep.dir)))


def epoch_line(row: Mapping[str, Any], max_epochs: int) -> str:
    loss, seconds = row[schema.TRAIN_LOSS], row[schema.EPOCH_SECONDS]
    best, at = row[schema.VAL_BEST_DICE], row[schema.VAL_BEST_THRESHOLD]
    return (
        f"fold {row['fold']} epoch {row['epoch']}/{max_epochs}: loss {loss:.4f}, "
        f"val best Dice {best:.4f} at t={at:.2f}, "
        f"threshold-averaged Dice {row[schema.VAL_THRESHOLD_AVERAGED_DICE]:.4f}, "
        f"lr {row['lr']:.2e}, {seconds:.1f} s"
    )


@dataclass(frozen=True)
class RunPlan:
    """What the estimates need to know of a run, fixed when it starts."""

    folds: int  # folds this process will train (unfinished ones; trainer.fold: that one)
    max_epochs: int
    patience: int
    cpu: bool
    shape: str  # e.g. "256x256 px, Unet resnet34"
    big_images: bool  # >= LARGE_IMAGE_PX with a resnet encoder
    above_quick_look: bool = True  # larger than QUICK_LOOK (model or images)
    kind: str = ""  # what sets the time of an epoch: runs of one kind share a Pace

    @classmethod
    def of(
        cls, cfg: DictConfig, records: FoldRecords, data: SegmentationData, cpu: bool
    ) -> RunPlan:
        trainer = cfg.trainer
        wanted = range(trainer.folds) if trainer.fold is None else [trainer.fold]
        height, width = (int(n) for n in data.images.shape[-2:])
        encoder = str(cfg.model.encoder)
        shape = f"{height}x{width} px, {cfg.model.arch} {encoder}"
        kwargs = OmegaConf.to_container(cfg.model.kwargs) if cfg.model.get("kwargs") else {}
        return cls(
            folds=sum(records.load(k) is None for k in wanted),
            max_epochs=int(trainer.max_epochs),
            patience=int(trainer.patience),
            cpu=cpu,
            shape=shape,
            big_images=min(height, width) >= LARGE_IMAGE_PX and encoder.startswith("resnet"),
            above_quick_look=max(height, width) > QUICK_LOOK_PX or not _tiny_model(cfg.model),
            kind=f"{shape} {kwargs}, {data.images.shape[1]} channels, batch "
            f"{trainer.batch_size}, {'cpu' if cpu else 'gpu'}, {trainer.get('threads')} threads",
        )


def _tiny_model(model: DictConfig) -> bool:
    """Whether ``model`` is ``model=tiny``'s architecture and encoder, at most as deep."""
    tiny = OmegaConf.load(config_dir() / "model" / "tiny.yaml")
    depth = (model.get("kwargs") or {}).get("encoder_depth", 5)
    same = (model.arch, model.encoder) == (tiny.arch, tiny.encoder)
    return same and int(depth) <= int(tiny.kwargs.encoder_depth)


@dataclass
class Monitor:
    """The run's one listener: log line, estimates and the tracker, in that order."""

    plan: RunPlan
    tracker: Tracker | None = None
    position: SweepPosition | None = None
    pace: Pace = field(default_factory=Pace)  # shared by the runs of a kind in a sweep
    started: set[int] = field(default_factory=set)  # folds with an epoch in this process
    ended: int = 0  # folds ended in this process
    since: float = field(default_factory=time.perf_counter)  # the last fold end (or start)
    epochs_since_s: float = 0.0  # the epoch seconds seen since then

    def __call__(self, row: Mapping[str, Any]) -> None:
        log.info(epoch_line(row, self.plan.max_epochs))
        self.pace.epoch_s.append(float(row[schema.EPOCH_SECONDS]))
        self.epochs_since_s += float(row[schema.EPOCH_SECONDS])
        fold = int(row["fold"])
        if fold not in self.started:
            self.started.add(fold)
            self.estimate(row)
        if self.tracker is not None:
            self.tracker.epoch(row)

    def fold_finished(self, fold: int, epochs: int) -> None:
        """The engine's word that ``fold`` has ended after ``epochs`` epochs."""
        now = time.perf_counter()
        self.pace.fold_epochs.append(epochs)
        self.pace.fold_s.append(max(now - self.since - self.epochs_since_s, 0.0))
        self.since, self.epochs_since_s = now, 0.0
        self.ended += 1
        if self.tracker is None:
            return
        self.tracker.fold_end(fold)
        if self.ended >= self.plan.folds:
            self.tracker.close()

    def announce(self) -> None:
        """At a run's start in a sweep, from the runs of its kind before it: its time."""
        if not self.pace.epoch_s or self.plan.folds == 0:
            return
        plan, epoch_s = self.plan, self.pace.epoch_time()
        likely, basis = self.pace.likely_epochs(plan)
        left = estimate_left(epoch_s, 0, plan.max_epochs, plan.folds - 1, likely, self.fold_s)
        log.info(
            "this run: likely about %s, at most %s (%d folds at %.1f s an epoch, the median of "
            "the runs before it; %s)%s",
            duration(left.likely_s),
            duration(left.upper_s),
            plan.folds,
            epoch_s,
            basis,
            self.sweep_note(epoch_s),
        )

    @property
    def fold_s(self) -> float:
        return self.pace.fold_time()

    def estimate(self, row: Mapping[str, Any]) -> None:
        """The time left (after the first epoch of each fold), and the CPU warning once."""
        plan = self.plan
        likely, basis = self.pace.likely_epochs(plan)
        epoch_s = self.pace.epoch_time()
        folds_after = max(plan.folds - len(self.started), 0)
        left = estimate_left(
            epoch_s, int(row["epoch"]), plan.max_epochs, folds_after, likely, self.fold_s
        )
        log.info(
            "time left for this run: at most %s (this fold and %d more, up to %d epochs each at "
            "%.1f s), likely about %s (%s)%s",
            duration(left.upper_s),
            folds_after,
            plan.max_epochs,
            epoch_s,
            duration(left.likely_s),
            basis,
            self.sweep_note(epoch_s),
        )
        large = left.upper_s > LARGE_RUN_S or plan.big_images
        if plan.cpu and large and plan.above_quick_look and "large" not in WARNED:
            WARNED.add("large")
            log.warning(
                "this configuration is large for a CPU (%s, %d folds x up to %d epochs; this run "
                "at most %s more): for a quick look try %s, or run it on a GPU",
                plan.shape,
                plan.folds,
                plan.max_epochs,
                duration(left.upper_s),
                QUICK_LOOK,
            )

    def sweep_note(self, epoch_s: float) -> str:
        position = self.position
        if position is None:
            return ""
        if position.of is None:
            return f"; sweep: run {position.run}"
        after = max(position.of - position.run, 0)
        folds = max(self.plan.folds, 1)
        whole = (epoch_s * self.plan.max_epochs + self.fold_s) * folds
        return (
            f"; sweep: run {position.run} of {position.of}, {after} after it "
            f"(up to {duration(whole)} each if alike and not finished already)"
        )


class RunInfo(Protocol):
    """What the monitor needs of segact.runs.runner.RunContext."""

    @property
    def folder(self) -> RunFolder: ...
    @property
    def label(self) -> str: ...
    @property
    def config_hash(self) -> str: ...
    @property
    def identity(self) -> dict[str, Any]: ...
    @property
    def device(self) -> torch.device: ...


def tracker_root(path: Path, label: str) -> Path:
    """The folder above the run's ``label`` (the sweep folder, or outputs/<experiment>)."""
    parts = Path(label).parts
    if parts and ".." not in parts and Path(path).parts[-len(parts) :] == parts:
        return Path(*Path(path).parts[: -len(parts)])
    return Path(path).parent


def build_tracker(cfg: DictConfig, ctx: RunInfo) -> Tracker | None:
    """The ``logger=`` tracker (None for logger=none); a missing package is a ConfigError."""
    node = cfg.get("logger")
    if node is None or node.get("_target_") is None:
        return None
    factory = instantiate_named(node, _partial_=True)
    settings = {**ctx.identity, "config_hash": ctx.config_hash}
    root = tracker_root(ctx.folder.path, ctx.label)
    return factory(root=root, label=ctx.label, settings=settings)


def epoch_listeners(
    cfg: DictConfig, ctx: RunInfo, data: SegmentationData
) -> tuple[EpochListener, ...]:
    """The listeners of a run's FoldSetup (built before any training: a missing tracker package
    stops the run at once); in a sweep, the run's time from the runs of its kind before it."""
    plan = RunPlan.of(cfg, FoldRecords(ctx.folder, ctx.config_hash), data, ctx.device.type == "cpu")
    position = sweep_position()
    pace = Pace()
    if position is not None:
        pace = PACES.setdefault((str(HydraConfig.get().sweep.dir), plan.kind), pace)
    watch = Monitor(plan, build_tracker(cfg, ctx), position, pace)
    watch.announce()
    return (watch,)
