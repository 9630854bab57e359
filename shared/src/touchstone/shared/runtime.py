"""What every service process shares at run time: NATS, JetStream, the store, a stop signal.

A service's ``__main__`` builds ``Settings``, then calls ``run_service(name, settings, main)``
where ``main(runtime)`` starts its loops and returns when ``runtime.stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from touchstone.shared.jetstream import LogLimits, connect_with, provision
from touchstone.shared.logs import setup_logging
from touchstone.shared.metrics import serve as serve_metrics
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.settings import Settings
from touchstone.shared.store import ProjectionStore, open_store
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    name: str
    settings: Settings
    nc: NATS
    js: JetStreamContext
    subjects: Subjects
    publisher: EventPublisher
    store: ProjectionStore
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.close()
        with contextlib.suppress(Exception):
            await self.nc.drain()


async def open_runtime(name: str, settings: Settings) -> Runtime:
    nc = await connect_with(settings, name)
    js = nc.jetstream()
    subjects = Subjects(settings.namespace)
    await provision(js, subjects, logs=LogLimits.of(settings))
    store = await open_store(settings.resolved_store_url)
    runtime = Runtime(name, settings, nc, js, subjects, EventPublisher(js, subjects), store)
    await answer_status(runtime)
    return runtime


async def answer_status(runtime: Runtime) -> None:
    """Reply to ``touchstone status`` pings on ``{ns}.status.ping`` with this process's health."""
    started = time.time()

    async def reply(msg: Msg) -> None:
        healthy, detail = True, "ok"
        try:
            await runtime.store.ping()
        except Exception as e:
            healthy, detail = False, f"store unreachable: {e}"
        body = {"service": runtime.name, "pid": os.getpid(), "healthy": healthy, "detail": detail,
                "uptime_s": round(time.time() - started, 1)}
        await msg.respond(json.dumps(body).encode())

    await runtime.nc.subscribe(runtime.subjects.status_ping, cb=reply)


def run_service(name: str, settings: Settings, main: Callable[[Runtime], Awaitable[None]]) -> None:
    """Run ``main`` until SIGINT/SIGTERM, then close cleanly."""
    setup_logging(name, level=settings.log_level, json_lines=settings.log_json)
    serve_metrics(settings.metrics_port)

    async def _run() -> None:
        runtime = await open_runtime(name, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.stop.set)
        log.info("%s started", name, extra={"namespace": settings.namespace})
        try:
            await main(runtime)
        finally:
            await runtime.close()
            log.info("%s stopped", name)

    asyncio.run(_run())
