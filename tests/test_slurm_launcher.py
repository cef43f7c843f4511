"""segact's SLURM launcher, without a cluster: when a job that left the queue counts as gone."""

from hydra_plugins.segact_launcher.slurm_launcher import leaves_no_result, still_queued


def test_a_job_scontrol_cannot_answer_for_is_still_waited_for():
    assert still_queued(None) and still_queued({"JobState": "PENDING"})
    assert not still_queued({}) and not still_queued({"JobState": "FAILED"})


def test_a_stopped_cancelled_or_timed_out_job_is_gone_without_the_grace_period():
    assert leaves_no_result({"JobState": "FAILED", "ExitCode": "130:0"})  # segact's stop
    assert leaves_no_result({"JobState": "TIMEOUT", "ExitCode": "0:15"})
    assert leaves_no_result({"JobState": "CANCELLED", "ExitCode": "0:15"})
    # a crash or a finished job may still write its result file: the grace period applies
    assert not leaves_no_result({"JobState": "FAILED", "ExitCode": "1:0"})
    assert not leaves_no_result({"JobState": "COMPLETED", "ExitCode": "0:0"})
    assert not leaves_no_result({}) and not leaves_no_result(None)
