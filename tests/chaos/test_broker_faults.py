"""The broker's faults with appends in flight, on a three-node cluster of the shipped config.

Short versions of `make chaos`'s broker scenarios (shorter pauses, same faults): every append
the publisher saw acknowledged is still in the stream at its sequence, the three nodes agree on
the stream afterwards, and appends went on after the fault. The times they took are figures
(`make chaos` writes them to bench/results/chaos.json), not assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from touchstone.chaos import netns, scenarios

pytestmark = [
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
    pytest.mark.timeout(240),
]

SHORT = scenarios.Timing(warmup_s=1.5, pause_s=10.0, settle_s=3.0)


def _holds_the_promise(figures: scenarios.Figures) -> None:
    assert figures.acked > 100, figures
    assert figures.lost == 0, f"acknowledged appends lost: {figures}"
    assert figures.refused == 0, f"the publisher gave up on appends: {figures}"
    assert figures.nodes_agree, f"nodes disagree on the events stream: {figures}"
    assert figures.acked_after_fault > 0, f"writes never resumed: {figures}"


async def test_killing_the_meta_and_stream_leaders_loses_no_acknowledged_append(tmp_path: Path) -> None:
    figures = await scenarios.run(scenarios.kill_leaders, "kill-leaders", tmp_path, SHORT)
    _holds_the_promise(figures)
    assert len(figures.resume_by_fault_s) == 2


async def test_pausing_one_node_while_another_is_killed_loses_nothing_and_ends_in_agreement(
    tmp_path: Path,
) -> None:
    figures = await scenarios.run(scenarios.pause_one_kill_another, "pause-and-kill", tmp_path, SHORT)
    _holds_the_promise(figures)
