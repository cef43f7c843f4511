"""Lock files that let several processes share a sweep: each fold (and the joining of a run's
files) is computed by whoever holds its lock; a dead holder's or a silent one's lock is taken
over. Where the locks of a run folder lie is ``runs/folder.py``'s business."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from segact.io import naming, read_json

log = logging.getLogger(__name__)


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
            with naming(path):  # a full disk names the lock, not "(no file named)"
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
