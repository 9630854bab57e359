"""The on-prem provider's process: it drives and records, the reactions are ``handlers``.

* Commands: ``handlers.COMMANDS`` bound to the shared ``ConsumerLoop`` on the provider's work
  queue (one filter subject per command in the table, the durable ``onprem-provider``).
* Reports: ``handlers.REPORTS`` bound to every agent's report subject (``adapters``).
* Silence: a live attempt whose agent has sent nothing for ``agent_timeout_s`` fails
  (infrastructure). The provider learns which attempts to watch from the launches it forwards
  and from the reports agents repeat on every heartbeat, so a restarted provider picks them up.
  Silence counts only while this provider listened: a provider that did not run for a while
  (SIGSTOP, a starved CPU: its sweep woke far too late) or lost its connection (a reconnect)
  heard nothing meanwhile, however loud the agents were, so silence counts afresh from then.
  Otherwise a replica waking from a pause fails every attempt it watches before reading the
  heartbeats waiting in its socket (attempts burned by the provider's fault, not the agent's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.onprem_provider import handlers
from touchstone.onprem_provider.adapters import AgentClient
from touchstone.onprem_provider.config import ProviderSettings
from touchstone.onprem_provider.handlers import COMMANDS, REPORTS, Deps
from touchstone.shared.agents import listen_to_agents
from touchstone.shared.commands import decode_command
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)

SERVICE = "onprem-provider"


class OnpremProvider:
    def __init__(
        self,
        settings: ProviderSettings,
        nc: NATS,
        js: JetStreamContext,
        subjects: Subjects,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.subjects = subjects
        self.deps = Deps(
            settings=settings,
            publisher=publisher or EventPublisher(js, subjects),
            agents=AgentClient(nc, subjects, timeout_s=settings.agent_command_timeout_s),
            store=settings.object_store(),
        )
        self.listening_since = time.monotonic()
        """Since when this provider has been running and connected without a break."""
        spec = COMMANDS.command_consumer(SERVICE, subjects, ack_wait_s=settings.ack_wait_s,
                                         max_deliver=settings.max_deliver)
        self.loop = ConsumerLoop(js, subjects, spec, COMMANDS.bind(self.deps), decode_command)

    async def run(self, stop: asyncio.Event) -> None:
        sub = await listen_to_agents(self.nc, self.subjects, REPORTS.bind(self.deps))
        sweeper = asyncio.create_task(self._sweep(stop))
        try:
            await self.loop.run(stop)
        finally:
            sweeper.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            for task in list(self.deps.background):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    # --- silence -----------------------------------------------------------------------

    def _reconnects(self) -> int:
        return int(getattr(self.nc, "stats", {}).get("reconnects", 0))

    async def _sweep(self, stop: asyncio.Event) -> None:
        interval = self.settings.sweep_interval_s
        last, reconnects = time.monotonic(), self._reconnects()
        while not stop.is_set():
            await asyncio.sleep(interval)
            now = time.monotonic()
            late, last = now - last - interval, now
            if late > max(1.0, interval) or self._reconnects() != reconnects:
                log.warning("not listening for %.1fs (paused, starved or reconnecting): agents' silence "
                            "counts from now", max(late, 0.0))
                self.listening_since, reconnects = now, self._reconnects()
            if not self.nc.is_connected:
                continue  # deaf now: whatever the agents say is not reaching us
            for name, w in list(self.deps.watch.items()):
                silent = now - max(self.deps.heard.get(w.host, 0.0), w.since, self.listening_since)
                if silent <= self.settings.agent_timeout_s:
                    continue
                reason = f"agent {w.host} silent for {silent:.0f}s"
                try:
                    await handlers.fail_attempt(self.deps, w.submission_id, w.task_id, w.attempt, reason, "silent")
                except Exception as e:
                    log.warning("could not fail %s after silence: %r", name, e)
                    continue
                self.deps.watch.pop(name, None)
