"""Agent hosts as the System page shows them: the last heartbeat heard from each.

Heartbeats are plain core-NATS reports (``touchstone.shared.agents``); the UI starts listening
when the System page is first opened, so the first view may list hosts only after a reload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from touchstone.shared.agents import AgentHeartbeat, decode_report
from touchstone.submission.deps import Deps

ONLINE_WITHIN_S = 15.0  # the scheduler's default heartbeat timeout


class Hosts:
    def __init__(self) -> None:
        self.seen: dict[str, AgentHeartbeat] = {}
        self._sub: Any = None

    async def listen(self, deps: Deps) -> None:
        if self._sub is not None or not deps.nc.is_connected:
            return

        async def on_report(msg: Any) -> None:
            report = decode_report(msg.data)
            if isinstance(report, AgentHeartbeat):
                self.seen[report.host] = report

        self._sub = await deps.nc.subscribe(deps.subjects.all_agent_reports, cb=on_report)

    def rows(self, declared: list[Any], now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per declared server and per host heard, declared ones first."""
        now = now or datetime.now(UTC)
        names = [s.name for s in declared] + sorted(set(self.seen) - {s.name for s in declared})
        slots = {s.name: s.num_slots for s in declared}
        rows = []
        for name in names:
            beat = self.seen.get(name)
            age = (now - beat.sent_at).total_seconds() if beat else None
            rows.append(
                {
                    "name": name,
                    "declared_slots": slots.get(name),
                    "slots": f"{beat.slots_free} free of {beat.slots_total}" if beat else "",
                    "gpus": ", ".join(g.name or f"gpu{g.index}" for g in beat.gpus) if beat else "",
                    "online": age is not None and age <= ONLINE_WITHIN_S,
                    "age": age,
                }
            )
        return rows
