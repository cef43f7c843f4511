"""``launcher=submitit_slurm``: Hydra's submitit launcher, made to say what SLURM says.

Three things the plain launcher does not do, for a user on a small or accounting-less cluster:
- ``sbatch`` refuses the jobs (a GPU or more memory than the partition has): one line with
  SLURM's own message and the key to change, exit 2, instead of a traceback;
- a job pending for a reason that cannot clear (``PartitionConfig``: more CPUs, memory or time
  than any node or the partition has) is cancelled and reported the same way at once, instead of
  a sweep that waits forever;
- job states are read with ``squeue``, which works without SLURM accounting (submitit asks
  ``sacct``), so a cancelled or killed job is noticed within seconds: the sweep ends with exit 1
  naming it, and the same command resumes it from its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

log = logging.getLogger(__name__)

HOPELESS_REASONS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "QOSMaxCpuPerJobLimit",
        "QOSMaxMemoryPerJob",
        "QOSMaxGRESPerJob",
    }
)
"""squeue reasons that no amount of waiting clears: the request exceeds what the cluster has."""
KEYS_TO_CHANGE = (
    "hydra.launcher.partition, hydra.launcher.cpus_per_task, hydra.launcher.mem_gb, "
    "hydra.launcher.gpus_per_node or hydra.launcher.timeout_min"
)
POLL_S = 2.0
GRACE_S = 10.0
"""How long a job that left the queue may take to leave its result file (shared filesystems)."""


def refuse(message: str, code: int) -> None:
    print(f"segact: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def queue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """job id -> (state, reason) of the jobs still in the queue (array tasks as ``<id>_<k>``);
    None when squeue could not answer."""
    if not job_ids:
        return {}
    command = [
        "squeue",
        "-h",
        "-o",
        "%i|%T|%r",
        "-j",
        ",".join(sorted({j.split("_")[0] for j in job_ids})),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:  # slurmctld busy (a socket timeout): no news, not "all gone"
        log.warning("squeue failed (%s); asking again", done.stderr.strip()[:200])
        return None
    states = {}
    for line in done.stdout.splitlines():
        job, state, reason = line.strip().split("|", 2)
        states[job] = (state, reason)
    return states


QUEUED_STATES = frozenset(
    {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"}
)
STOPPED_EXIT_CODE = "130:0"
"""segact's exit after a stop signal (SIGUSR2 before the time limit, SIGTERM, Ctrl-C): the run
saved its checkpoint and submitit writes no result, so there is nothing to wait for."""
NO_RESULT_STATES = frozenset({"CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"})


def scontrol_job(job_id: str) -> dict[str, str] | None:
    """``scontrol show job``'s fields of one job; None when scontrol could not answer (busy),
    {} when it no longer knows the job."""
    done = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None
    return dict(w.split("=", 1) for w in done.stdout.split() if "=" in w)


def still_queued(fields: dict[str, str] | None) -> bool:
    """A second opinion before a job counts as gone: ``scontrol`` still knows it as pending or
    running (squeue lists an array task being split off its array for a moment not at all)."""
    return fields is None or fields.get("JobState", "") in QUEUED_STATES


def leaves_no_result(fields: dict[str, str] | None) -> bool:
    """The job ended in a way after which no result file will come (stopped, cancelled, out of
    time), so it is gone at once instead of after the shared filesystem's grace period: a
    resubmit loop starts its next attempt seconds sooner."""
    if not fields:
        return False
    state = fields.get("JobState", "")
    stopped = state == "FAILED" and fields.get("ExitCode") == STOPPED_EXIT_CODE
    return stopped or state in NO_RESULT_STATES


class SlurmLauncher(SubmititSlurmLauncher):
    """The submitit SLURM launcher with one-line errors and squeue-based waiting."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        import submitit  # the plain launcher's lazy import, for the same reason

        self._jobs: list[Any] = []
        real_map_array = submitit.AutoExecutor.map_array

        def submit(executor: Any, *args: Any) -> list[Any]:
            with sbatch_stderr() as said:
                try:
                    self._jobs = real_map_array(executor, *args)
                except Exception as error:  # submitit wraps sbatch's refusal in its own errors
                    said.append(_first_line(error))
            if len(said) > 1:
                refuse(f"sbatch refused the jobs: {said[0]}; change {KEYS_TO_CHANGE}", 2)
            return _Waited(self._jobs)

        submitit.AutoExecutor.map_array = submit
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = real_map_array


class _Waited(list):
    """What ``launch`` iterates over: the jobs, each yielded once every job has ended."""

    def __init__(self, jobs: list[Any]) -> None:
        super().__init__(_Job(job) for job in wait(jobs))


class _Job:
    """A finished job's ``results()`` for the plain launcher's list comprehension."""

    def __init__(self, outcome: tuple[Any, JobReturn | None]) -> None:
        self.job, self.ret = outcome

    def results(self) -> list[JobReturn]:
        return [self.ret if self.ret is not None else self.job.results()[0]]


def wait(jobs: list[Any]) -> list[tuple[Any, JobReturn | None]]:
    """Wait for every job with squeue; refuse hopeless ones; exit 1 naming the jobs that ended
    without a result (cancelled, killed, out of time)."""
    left_at: dict[str, float] = {}
    while True:
        states = queue_states([j.job_id for j in jobs])
        if states is None:
            time.sleep(POLL_S)
            continue
        hopeless = {
            j: s for j, s in states.items() if s[0] == "PENDING" and s[1] in HOPELESS_REASONS
        }
        if hopeless:
            subprocess.run(["scancel", *sorted({j.split("_")[0] for j in hopeless})], check=False)
            job, (_, reason) = sorted(hopeless.items())[0]
            refuse(
                f"SLURM cannot start job {job} ({reason}: the request exceeds what the "
                f"partition or its nodes have); change {KEYS_TO_CHANGE}",
                2,
            )
        now = time.monotonic()
        pending = []
        for job in jobs:
            if job.paths.result_pickle.exists():
                continue
            fields = None if job.job_id in states else scontrol_job(job.job_id)
            if job.job_id in states or still_queued(fields):
                left_at.pop(job.job_id, None)  # absent only for a moment (an array task split)
                pending.append(job)
            elif leaves_no_result(fields):
                continue
            elif now - left_at.setdefault(job.job_id, now) < GRACE_S:
                pending.append(job)
        if not pending:
            break
        time.sleep(POLL_S)
    unfinished = [j for j in jobs if not j.paths.result_pickle.exists()]
    if unfinished:
        names = "; ".join(f"job {j.job_id} (log {j.paths.stderr})" for j in unfinished)
        refuse(
            f"{len(unfinished)} job(s) ended without finishing (cancelled, killed or out of "
            f"time): {names}; run the same command again to resume them",
            1,
        )
    return [(job, None) for job in jobs]


@contextlib.contextmanager
def sbatch_stderr() -> Iterator[list[str]]:
    """Catch what sbatch writes to the terminal (submitit lets it through) while the jobs are
    submitted: on a refusal its first error line is the message (yielded list: [that line,
    submitit's]); on success it is written out as it came."""
    said: list[str] = []
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
    if said:
        lines = [line for line in text.splitlines() if "error" in line.lower()]
        said.insert(0, lines[0].strip() if lines else said[0])
    else:
        sys.stderr.write(text)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line for line in text.splitlines() if "error" in line.lower()] or text.splitlines()
    return lines[0].strip()
