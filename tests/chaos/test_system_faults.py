"""Touchstone across hosts under a fault, the short versions of `make chaos`: two replicas of each
service on a control host (API, scheduler, on-prem provider, results, RunPod provider), an agent
on each of three GPU hosts (own data directory, own NATS user), the local RunPod on a host of its
own, a three-node cluster. Each fault runs while submissions train on-prem and on RunPod: every
task ends, nothing runs twice, no pod is leaked or doubled, every finished attempt's log and
artifacts are in the S3 bucket on the objects host (moto's server; agents upload there with
POST-policy grants), projections rebuilt from the stream equal what both API replicas serve, and
the fault's own promise holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from touchstone.chaos import faults, netns, workload

pytestmark = [
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
    pytest.mark.timeout(600),
]


async def test_a_rolling_restart_of_every_process_loses_doubles_and_burns_nothing(tmp_path: Path) -> None:
    """Scenario 4, short: every process restarted (SIGTERM, start), one at a time, while two
    submissions train on two intervals each: no attempt is burned by the restart."""
    figures = await workload.run(workload.rolling_restart, "rolling-restart", tmp_path,
                                 workload.Load(submissions=2, intervals=(15, 60)), timeout=480)
    assert figures.submissions == 2 and figures.tasks == 6, figures
    assert figures.problems == [], figures
    assert figures.objects_missing == 0 and figures.objects_checked > 0, figures  # every log and output in S3
    assert figures.unfinished == 0 and figures.double_runs == 0, figures
    assert figures.attempts_burned == 0, figures
    assert figures.projections_equal, figures


async def test_a_runpod_provider_killed_between_create_and_record_leaks_and_doubles_nothing(tmp_path: Path) -> None:
    """Scenario 6, short: the replica that asked RunPod for a pod is SIGKILLed before it records
    it; the launch comes back to the other replica, which adopts that pod."""
    figures = await workload.run(faults.kill_runpod_provider_mid_create, "kill-runpod-mid-create", tmp_path,
                                 workload.Load(submissions=2, intervals=(15,), platforms=("runpod", "onprem")),
                                 timeout=480)
    assert figures.fault["hit"] is True, figures  # the kill fell between create and record
    assert figures.fault["orphan_recorded_after_s"] is not None, figures  # its pod was adopted
    assert figures.problems == [], figures
    assert figures.objects_missing == 0 and figures.objects_checked > 0, figures  # every log and output in S3
    assert figures.unfinished == 0 and figures.double_runs == 0, figures
    assert figures.pods_leaked == 0 and figures.pods_doubled == 0 and figures.pods_created >= 1, figures
    assert figures.projections_equal, figures


async def test_a_noisy_task_filling_the_logs_stream_stops_no_event_write(tmp_path: Path) -> None:
    """Scenario 7, short: a noisy task fills the logs stream (its own budget, discard old) while
    another submission trains; event writes on the same nodes never stop, both finish."""
    figures = await workload.run(faults.fill_logs, "fill-logs", tmp_path,
                                 workload.Load(submissions=1, intervals=(15,), noisy_lines=faults.NOISE_LINES,
                                               logs=faults.LOGS), timeout=480)
    fault = figures.fault
    assert fault["logs_full"] is True and fault["logs_discarded"] > 0, figures  # type: ignore[operator]
    assert fault["logs_bytes"] <= faults.LOGS.max_bytes, figures  # type: ignore[operator]
    assert fault["probe_refused"] == 0 and fault["probe_acked"] > 0, figures
    assert figures.problems == [], figures
    assert figures.objects_missing == 0 and figures.objects_checked > 0, figures  # every log and output in S3
    assert figures.unfinished == 0 and figures.double_runs == 0 and figures.submissions == 2, figures
    assert figures.projections_equal, figures
