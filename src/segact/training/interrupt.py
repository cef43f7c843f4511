"""Ctrl-C (or SLURM's SIGTERM / pre-timeout SIGUSR2) during training: finish the epoch, save a
checkpoint, stop with one line (exit 130).

The first SIGINT only asks the fold loop to stop after the current epoch, so the checkpoint it
saves lies on an epoch boundary and the resumed run ends with the same numbers; a second SIGINT
stops at once (the last regular checkpoint stays).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """Training stopped on the user's request, after saving a checkpoint."""


@dataclass
class StopRequest:
    requested: bool = False


EARLY_WARNING = StopRequest()
"""SLURM's time-limit warning heard before training started (``warned_before_training``)."""

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
"""Ctrl-C; SLURM's scancel (SIGTERM, KillWait seconds before SIGKILL); and the warning that
submitit asks SLURM to send before the time limit (``--signal=USR2@<signal_delay_s>``)."""


@contextlib.contextmanager
def stop_after_epoch_on_sigint() -> Iterator[StopRequest]:
    """A StopRequest that the first stop signal sets (main thread only; elsewhere never set)."""
    request = StopRequest(requested=EARLY_WARNING.requested)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.requested = True
        log.warning(
            "interrupted (%s): finishing this epoch and saving a checkpoint%s",
            signal.Signals(signum).name,
            " (Ctrl-C again to stop now)" if signum == signal.SIGINT else "",
        )

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def warned_before_training() -> Iterator[None]:
    """From a job's start: SLURM's time-limit warning (SIGUSR2) that comes before training does
    (SLURM may send it up to 60 s earlier than asked, while the data still loads) is kept, and the
    first fold stops after one epoch with a checkpoint, instead of submitit's own handler failing
    the run: every attempt of a resubmit loop gets further than the one before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        EARLY_WARNING.requested = True
        log.warning("time-limit warning (SIGUSR2) before training: stopping after one epoch")

    previous = signal.signal(signal.SIGUSR2, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR2, previous)
        EARLY_WARNING.requested = False
