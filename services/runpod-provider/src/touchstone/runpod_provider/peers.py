"""Replicas of the provider tell each other which attempts each drives (``LiveAttempts``).

Several providers share the launch commands (one consumer), RunPod's pod list and the SSH key.
Each publishes the names of the attempts it drives, launching or running, on
``{ns}.provider.runpod.live`` every ``heartbeat_interval_s`` and at once when it takes one on;
the scheduler's stuck detection and the Tasks page read the same report.

An attempt a peer named lately is the peer's: its pod is never adopted here, and its launch
(nak'ed until the pod is recorded, so redelivered to any replica) is left pending. A replica
takes such attempts only after listening for ``peer_silence_s``, so a restarted replica does
not take what its peer still drives, and a peer that died (silent that long) leaves its
attempts to us.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from touchstone.shared.providers import LiveAttempts, decode_live, encode_live
from touchstone.shared.subjects import Subjects

from .adapters import PLATFORM

log = logging.getLogger(__name__)


class Peers:
    def __init__(self, nc: NATS, subjects: Subjects, silence_s: float, attempts: Mapping[str, object],
                 replica: str | None = None) -> None:
        self.nc = nc
        self.subjects = subjects
        self.silence_s = silence_s
        self.attempts = attempts
        """The attempts driven here, by pod name (what this replica announces)."""
        self.replica = replica or uuid.uuid4().hex[:16]
        self.heard: dict[str, float] = {}
        """Pod names a peer's report named, and when (``time.monotonic``)."""
        self.listening_since: float | None = None
        self._announcing: set[asyncio.Task[None]] = set()

    @property
    def subject(self) -> str:
        return self.subjects.provider_live(PLATFORM)

    async def listen(self) -> Subscription:
        sub = await self.nc.subscribe(self.subject, cb=self._on_report)
        self.listening_since = time.monotonic()
        return sub

    async def _on_report(self, msg: Msg) -> None:
        """A peer's report: the names it carries that we do not drive are the peer's."""
        try:
            report = decode_live(msg.data, msg.subject)
        except ValueError as e:
            log.debug("ignoring a report on %s: %s", msg.subject, e)
            return
        if report.replica == self.replica:
            return
        now = time.monotonic()
        for name in report.running:
            if name not in self.attempts:
                self.heard[name] = now

    def drives(self, name: str, now: float) -> bool:
        """Whether a peer named this pod within ``silence_s``, or we have not listened that long
        yet (a replica that just started cannot know)."""
        self.heard = {n: at for n, at in self.heard.items() if now - at <= self.silence_s}
        if self.listening_since is None or now - self.listening_since < self.silence_s:
            return True
        return name in self.heard

    async def announce(self) -> None:
        """Every attempt driven here, launching or running."""
        report = LiveAttempts(platform=PLATFORM, replica=self.replica, namespace=self.subjects.ns,
                              running=tuple(sorted(self.attempts)))
        await self.nc.publish(self.subject, encode_live(report))

    def announce_now(self) -> None:
        """Announce in the background (an attempt was just taken on: peers leave it to us)."""
        task = asyncio.create_task(self.announce())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)
