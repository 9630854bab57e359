"""The one bench harness: every bench's p99 means the same thing, and every result file says
on what machine and under what load it was measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from touchstone.bench.harness import Run, broker, percentile, row


def test_percentiles_are_nearest_rank() -> None:
    samples = list(range(1, 101))  # 1..100
    assert percentile(samples, 0.50) == 50
    assert percentile(samples, 0.99) == 99
    assert percentile(samples, 1.0) == 100
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0
    assert percentile([7.0] * 12 + [90.0], 0.99) == 90.0  # a dozen samples: the worst one is the p99
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 99)  # a percent, not a fraction: refused rather than misread


def test_a_result_is_written_with_its_machine_and_load(tmp_path: Path) -> None:
    run = Run()
    path = run.write(tmp_path, "demo", {"name": "demo", "rows": [row("x", 1, "s", "<= 2", True), row("y", 3, "s")]})
    written = json.loads(path.read_text())
    assert written["rows"][0] == {"metric": "x", "value": 1, "unit": "s", "target": "<= 2", "met": True}
    assert "target" not in written["rows"][1]
    assert written["machine"]["cpus"] >= 1
    assert len(written["load_average"]["before"]) == 3 and len(written["load_average"]["after"]) == 3
    assert written["at"] and written["wall_s"] >= 0


async def test_the_broker_is_a_real_provisioned_jetstream() -> None:
    async with broker("harness") as b:
        ack = await b.js.publish(f"{b.subjects.ns}.evt.task.t1.TaskQueued", b"{}", stream=b.subjects.events_stream)
        assert ack.seq == 1
        folder = b.tmp
    assert not folder.exists()  # nothing left behind
