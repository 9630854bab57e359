"""Scenario 3 of the chaos suite, as in `make chaos`: the scheduler leader is SIGKILLed while it
places 500 tasks on a three-node cluster; the standby takes the lease and places the rest.
Every task is assigned exactly once and no attempt is launched twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from touchstone.chaos import netns, placement

pytestmark = [
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
    pytest.mark.timeout(240),
]


async def test_killing_the_scheduler_leader_mid_placement_loses_and_doubles_nothing(tmp_path: Path) -> None:
    figures = await placement.kill_scheduler_leader(tmp_path, tasks=500)
    assert figures.killed and figures.took_over and figures.took_over != figures.killed, figures
    assert figures.lost == 0, figures
    assert figures.double_assigned == 0, figures
    assert figures.double_launched == 0, figures
    assert figures.assigned == figures.tasks, figures
