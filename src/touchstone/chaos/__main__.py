"""``python -m touchstone.chaos`` (``make chaos``): every scenario at full length, the figures
to ``bench/results/chaos.json`` and a table on standard output (the table of
``docs/reliability.md``); then the scheduler bench on the R3 cluster
(``bench/results/scheduler-r3.json``; ``TOUCHSTONE_CHAOS_BENCH=0`` skips it).
Needs root (network namespaces) and iproute2."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from touchstone.chaos import netns, placement, r3bench, scenarios, workload

FULL = scenarios.Timing(warmup_s=3.0, pause_s=30.0, settle_s=5.0)
TARGET_WRITES_RESUME_S = 5.0
# the load of each whole-system scenario; the 30 x 3 is TOUCHSTONE_CHAOS_SUBMISSIONS=30
LOAD = workload.Load(submissions=int(os.environ.get("TOUCHSTONE_CHAOS_SUBMISSIONS", "6")), intervals=(15, 60, 240))
SYSTEM = ((2, workload.cut_gpu_host, "cut-gpu-host"), (4, workload.rolling_restart, "rolling-restart"),
          (5, workload.pause_provider, "pause-provider"))


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
        for number, fault, name in SYSTEM:
            whole = await workload.run(fault, name, root, LOAD, timeout=1800)
            burns_ok = number == 2 or whole.attempts_burned == 0
            rows.append({"number": number, **whole.as_dict(), "met": whole.unfinished == 0
                         and whole.double_runs == 0 and whole.projections_equal and burns_ok and not whole.problems})
    return sorted(rows, key=lambda r: int(r["number"]))  # type: ignore[call-overload]


def main(out: Path) -> int:
    rows = asyncio.run(scenarios_run())
    result = {"name": "chaos (3-node NATS cluster in network namespaces)", "at_utc": datetime.now(UTC).isoformat(),
              "load_average": os.getloadavg(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    if os.environ.get("TOUCHSTONE_CHAOS_BENCH", "1") == "1":
        with tempfile.TemporaryDirectory() as tmp:
            bench = asyncio.run(r3bench.scheduler_on_r3(Path(tmp)))
        bench["at_utc"] = datetime.now(UTC).isoformat()
        (out / "scheduler-r3.json").write_text(json.dumps(bench, indent=2) + "\n")
        for row in bench["rows"]:  # type: ignore[attr-defined]
            print(f"{row['metric']:64} {row['value']:>10} {row['unit']}")
    print(table(rows))
    return 0 if all(r["met"] for r in rows) else 1


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| # | scenario | acked appends / tasks | lost | double runs | attempts burned | writes resume "
             "| placements resume | met |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lost = r.get("lost", r.get("unfinished"))
        double = r.get("double_runs", r.get("double_launched", "-"))
        lines.append(
            f"| {r['number']} | {r['scenario']} | {r.get('acked', r.get('tasks'))} | {lost} | {double} | "
            f"{r.get('attempts_burned', '-')} | {_s(r.get('writes_resume_s'))} | {_s(r.get('placements_resume_s'))} "
            f"| {'yes' if r['met'] else 'NO'} |")
    return "\n".join(lines)


def _s(value: object) -> str:
    return "-" if value is None else f"{value} s"


if __name__ == "__main__":
    reason = netns.available()
    if reason:
        sys.exit(f"make chaos: {reason}")
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")))
