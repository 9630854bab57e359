"""Touchstone across hosts under a fault, the short version of `make chaos`: two replicas of each
service on a control host, an agent on each of three GPU hosts (own data directory, own NATS
user), a three-node cluster. Every process is restarted, one at a time, while two submissions
train on two intervals each: every task ends, nothing runs twice, no attempt is burned by the
restart, and projections rebuilt from the stream equal what both API replicas serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from touchstone.chaos import netns, workload

pytestmark = [
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
    pytest.mark.timeout(600),
]


async def test_a_rolling_restart_of_every_process_loses_doubles_and_burns_nothing(tmp_path: Path) -> None:
    figures = await workload.run(workload.rolling_restart, "rolling-restart", tmp_path,
                                 workload.Load(submissions=2, intervals=(15, 60)), timeout=480)
    assert figures.submissions == 2 and figures.tasks == 6, figures
    assert figures.problems == [], figures
    assert figures.unfinished == 0 and figures.double_runs == 0, figures
    assert figures.attempts_burned == 0, figures
    assert figures.projections_equal, figures
