"""The typed settings of a run below ``segact.runs``: the schemas of the config groups that
training reads (``trainer``, ``runtime``, ``eval``, ``model``; registered in Hydra's ConfigStore by
``segact.config``, which owns every other schema), and ``RunSettings``, which the runner builds from
the composed config once (``segact.config.run_settings``). Each default is declared here, once;
nothing below the runner sees a DictConfig or falls back to a default of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segact.evaluation.sweep import DEFAULT_THRESHOLDS
from segact.training.forward import ForwardOptions, Precision
from segact.training.graphs import CudaGraphs
from segact.training.memory_format import AUTO as CHANNELS_LAST_AUTO
from segact.training.protocol import ProtocolName
from segact.training.selection import SelectMetric


@dataclass
class TrainerConfig:
    folds: int = 5
    fold: int | None = None  # run only this fold (a fold as a job); null: every fold
    shuffle_folds: bool = True  # false: contiguous folds in case order (sklearn KFold, the paper)
    max_epochs: int = 30
    patience: int = 5  # stop after this many epochs without improvement of eval.select_metric
    batch_size: int = 16
    lr: float = 1e-3
    lr_factor: float = 0.5  # scheduler=plateau: lr *= lr_factor when the metric stalls ...
    lr_patience: int = 3  # ... for this many epochs
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # torch threads; 0: one per available core (changes float sums on CPU)
    # auto: channels_last on CUDA, contiguous on CPU (uses_channels_last); true or false to choose.
    # Any, not bool | str: OmegaConf 2.3 takes no unions (check_trainer checks the value).
    channels_last: Any = CHANNELS_LAST_AUTO
    precision: Precision = Precision.auto
    compile: bool = False  # torch.compile the model
    # Capture each fold's training step and evaluation forward pass as CUDA graphs (auto: on CUDA
    # where possible, else eager with one log line saying why); changes no number.
    cuda_graphs: CudaGraphs = CudaGraphs.auto
    # Train this many folds of a run in one process, side by side epoch by epoch (on CUDA each
    # on its own stream); 1: one after another. Changes no number.
    fold_group: int = 1

    @property
    def forward(self) -> ForwardOptions:
        """The options of the model call (``segact.training.forward``)."""
        return ForwardOptions(self.channels_last, self.precision, self.compile)


@dataclass
class RuntimeConfig:
    """Settings that change no number: the run's identity and folder name skip this node."""

    progress: bool = True
    checkpoint_every_s: float = 60.0  # save a fold checkpoint at most this often (0: every epoch)
    lock_stale_s: float = 1800.0  # a lock without a heartbeat for this long is taken over
    save_models: bool = True  # keep each finished fold's weights in <run>/models (segact-predict)
    reuse: bool = True  # copy a run finished in another sweep of the output root (runs/reuse.py)


@dataclass
class EvalConfig:
    thresholds: list[float] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    protocol: ProtocolName = ProtocolName.paper
    select_metric: SelectMetric = SelectMetric.threshold_averaged_dice
    inner_val_fraction: float = 0.2
    calibration_bins: int = 15
    batch_size: int = 64


@dataclass
class ModelConfig:
    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None  # no download at run time; 'imagenet' where cached
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSettings:
    """What training a run's folds reads of its config, typed. The optimizer and scheduler are
    plain dicts for ``hydra.utils.instantiate`` (``_target_``, ``_partial_: true``, resolved)."""

    trainer: TrainerConfig
    eval: EvalConfig
    model: ModelConfig
    runtime: RuntimeConfig
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
