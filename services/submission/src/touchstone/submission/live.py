"""What the Tasks and task pages show of a running task beyond its events: training progress
(the trainer's progress lines on the task's console subject) and the GPU it runs on (utilisation
and memory from the agent's latest heartbeat).

``TaskProgress.run`` listens to every task's console from the service's start and keeps the
latest progress per task aggregate, in memory, like ``Hosts`` keeps heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any

from nats.aio.client import Client as NATS
from touchstone.shared.agents import GpuStatus
from touchstone.shared.progress import Progress, latest_progress
from touchstone.shared.subjects import Subjects
from touchstone.shared.views import TaskView
from touchstone.submission.hosts import Hosts

MAX_TRACKED = 10_000


class TaskProgress:
    def __init__(self, nc: NATS, subjects: Subjects) -> None:
        self.nc = nc
        self.subjects = subjects
        self.prefix = subjects.logs("x")[:-1]
        self.latest: OrderedDict[str, Progress] = OrderedDict()

    def on_console(self, subject: str, data: bytes) -> None:
        found = latest_progress(data)
        if found is None or not subject.startswith(self.prefix):
            return
        key = subject[len(self.prefix):]
        self.latest[key] = found
        self.latest.move_to_end(key)
        while len(self.latest) > MAX_TRACKED:
            self.latest.popitem(last=False)

    def of(self, task: TaskView) -> Progress | None:
        return self.latest.get(task.key)

    async def run(self, stop: asyncio.Event) -> None:
        async def on_msg(msg: Any) -> None:
            self.on_console(msg.subject, msg.data)

        sub = await self.nc.subscribe(self.subjects.all_logs, cb=on_msg)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def gpu_of(hosts: Hosts, task: TaskView) -> GpuStatus | None:
    """The GPU of an on-prem task (placement ``host/slot``; the slot is the device index the
    agent hands to the container), as the host's latest heartbeat reports it."""
    if not task.placement or "/" not in task.placement:
        return None
    host, _, slot = task.placement.partition("/")
    heard = hosts.seen.get(host)
    if heard is None or not slot.isdigit():
        return None
    return next((g for g in heard.report.gpus if g.index == int(slot)), None)
