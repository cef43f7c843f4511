"""Ctrl-C during training: finish the epoch, save a checkpoint, stop with one line (exit 130).

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


@contextlib.contextmanager
def stop_after_epoch_on_sigint() -> Iterator[StopRequest]:
    """A StopRequest that the first Ctrl-C sets (main thread only; elsewhere never set)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True
        log.warning(
            "interrupted: finishing this epoch and saving a checkpoint (Ctrl-C again to stop now)"
        )

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
