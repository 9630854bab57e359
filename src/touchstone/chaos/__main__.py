"""``python -m touchstone.chaos`` (``make chaos``): every scenario at full length, the figures
to ``bench/results/chaos.json`` and a table on standard output (the table of
``docs/reliability.md``). Needs root (network namespaces) and iproute2."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from touchstone.chaos import netns, placement, scenarios

FULL = scenarios.Timing(warmup_s=3.0, pause_s=30.0, settle_s=5.0)
TARGET_WRITES_RESUME_S = 5.0


async def scenarios_run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for number, fault, name in ((1, scenarios.kill_leaders, "kill-leaders"),
                                    (8, scenarios.pause_one_kill_another, "pause-and-kill")):
            figures = await scenarios.run(fault, name, root, FULL)
            rows.append({"number": number, **figures.as_dict(),
                         "met": figures.lost == 0 and figures.nodes_agree and figures.refused == 0
                         and (number != 1 or figures.writes_resume_s <= TARGET_WRITES_RESUME_S)})
        moved = await placement.kill_scheduler_leader(root / "placement")
        rows.append({"number": 3, **moved.as_dict(),
                     "met": moved.lost == 0 and moved.double_assigned == 0 and moved.double_launched == 0})
    return rows


def main(out: Path) -> int:
    rows = asyncio.run(scenarios_run())
    result = {"name": "chaos (3-node NATS cluster in network namespaces)", "at_utc": datetime.now(UTC).isoformat(),
              "load_average": os.getloadavg(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    return 0 if all(r["met"] for r in rows) else 1


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| # | scenario | acked / tasks | lost | double runs | writes resume | placements resume | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['number']} | {r['scenario']} | {r.get('acked', r.get('tasks'))} | {r['lost']} | "
            f"{r.get('double_launched', '-')} | {_s(r.get('writes_resume_s'))} | {_s(r.get('placements_resume_s'))} "
            f"| {'yes' if r['met'] else 'NO'} |")
    return "\n".join(lines)


def _s(value: object) -> str:
    return "-" if value is None else f"{value} s"


if __name__ == "__main__":
    reason = netns.available()
    if reason:
        sys.exit(f"make chaos: {reason}")
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")))
