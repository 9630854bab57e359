"""Agent hosts as the System and Tasks pages show them: the last heartbeat heard from each
host, and when a heartbeat last named each running container (the task's heartbeat).

Heartbeats are plain core-NATS reports (``touchstone.shared.agents``) from the agents; the
RunPod provider, which is no host, names its attempts in a report of its own
(``touchstone.shared.providers.LiveAttempts``), which counts as a heartbeat of each attempt it
names. ``run`` listens from the service's start, so the pages know hosts a few seconds after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from touchstone.shared.agents import AgentHeartbeat, decode_report
from touchstone.shared.providers import decode_live
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)

ONLINE_WITHIN_S = 15.0  # the scheduler's default heartbeat timeout


@dataclass(frozen=True)
class Heard:
    report: AgentHeartbeat
    at: datetime  # when this process received it (the agent's clock may differ)


class Hosts:
    def __init__(self, nc: NATS, subjects: Subjects) -> None:
        self.nc = nc
        self.subjects = subjects
        self.seen: dict[str, Heard] = {}
        self.named: dict[str, datetime] = {}  # container name -> last heartbeat naming it

    def on_report(self, data: bytes, now: datetime | None = None) -> None:
        try:
            report = decode_report(data)
        except ValueError as e:
            log.debug("ignoring an agent report: %s", e)
            return
        if isinstance(report, AgentHeartbeat):
            at = now or datetime.now(UTC)
            self.seen[report.host] = Heard(report, at)
            for name in report.running:
                self.named[name] = at

    def on_live(self, data: bytes, subject: str, now: datetime | None = None) -> None:
        """A provider's live attempts: each name it carries was heard of now (no host)."""
        try:
            report = decode_live(data, subject)
        except ValueError as e:
            log.debug("ignoring a provider report: %s", e)
            return
        at = now or datetime.now(UTC)
        for name in report.running:
            self.named[name] = at

    async def run(self, stop: asyncio.Event) -> None:
        """Listen to every agent's and provider's reports until ``stop`` is set."""

        async def on_msg(msg: Any) -> None:
            self.on_report(msg.data)

        async def on_live(msg: Any) -> None:
            self.on_live(msg.data, msg.subject)

        subs = [await self.nc.subscribe(self.subjects.all_agent_reports, cb=on_msg),
                await self.nc.subscribe(self.subjects.all_provider_live, cb=on_live)]
        try:
            await stop.wait()
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def heartbeat_age(self, container: str | None, now: datetime) -> float | None:
        """Seconds since a heartbeat last named ``container`` (None: none since this start)."""
        at = self.named.get(container) if container else None
        return max(0.0, (now - at).total_seconds()) if at else None

    def rows(self, declared: list[Any], now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per declared server and per host heard, declared ones first."""
        now = now or datetime.now(UTC)
        names = [s.name for s in declared] + sorted(set(self.seen) - {s.name for s in declared})
        slots = {s.name: s.num_slots for s in declared}
        rows = []
        for name in names:
            heard = self.seen.get(name)
            beat = heard.report if heard else None
            age = max(0.0, (now - heard.at).total_seconds()) if heard else None
            rows.append(
                {
                    "name": name,
                    "declared_slots": slots.get(name),
                    "slots": f"{beat.slots_free} free of {beat.slots_total}" if beat else "",
                    "gpus": ", ".join(g.name or f"gpu{g.index}" for g in beat.gpus) if beat else "",
                    "online": age is not None and age <= ONLINE_WITHIN_S,
                    "isolation": beat.isolation if beat else "",
                    "refusing": beat.refusing if beat else None,
                    "age": age,
                }
            )
        return rows
