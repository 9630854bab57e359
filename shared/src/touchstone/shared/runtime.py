"""What every service process shares at run time: NATS, JetStream, the store, a stop signal.

A service's ``__main__`` builds ``Settings``, then calls ``run_service(name, settings, main)``
where ``main(runtime)`` starts its loops and returns when ``runtime.stop`` is set. With
``metrics_port`` set, ``/healthz``, ``/readyz`` and ``/metrics`` answer on
``metrics_host:metrics_port`` from before NATS is reached (``touchstone.shared.health``).
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
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from touchstone.shared.health import LOOPS, HealthServer
from touchstone.shared.jetstream import LogLimits, connect_with, provision
from touchstone.shared.logs import setup_logging
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


async def readiness(runtime: Runtime | None) -> dict[str, Any]:
    """Ready: connected to NATS, the store answers, the service's main and every loop it
    started (consumers, feeds) are running and it is not stopping."""
    if runtime is None:
        return {"nats": "connecting"}
    checks: dict[str, Any] = {"nats": True if runtime.nc.is_connected else "not connected"}
    try:
        await asyncio.wait_for(runtime.store.ping(), timeout=2.0)
        checks["store"] = True
    except Exception as e:
        checks["store"] = f"{type(e).__name__}: {e}"
    checks.update(LOOPS.checks())
    if runtime.stop.is_set():
        checks["stopping"] = "the service is shutting down"
    return checks


def run_service(name: str, settings: Settings, main: Callable[[Runtime], Awaitable[None]]) -> None:
    """Run ``main`` until SIGINT/SIGTERM, then close cleanly."""
    setup_logging(name, level=settings.log_level, json_lines=settings.log_json)

    async def _run() -> None:
        loop = asyncio.get_running_loop()
        opened: list[Runtime] = []

        async def ready() -> dict[str, Any]:
            return await readiness(opened[0] if opened else None)

        health = (
            HealthServer(settings.metrics_host, settings.metrics_port, loop, ready).start()
            if settings.metrics_port else None
        )
        try:
            runtime = await open_runtime(name, settings)
            opened.append(runtime)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, runtime.stop.set)
            log.info("%s started", name, extra={"namespace": settings.namespace})
            try:
                with LOOPS.running(name):
                    await main(runtime)
            finally:
                await runtime.close()
                log.info("%s stopped", name)
        finally:
            if health is not None:
                health.close()

    asyncio.run(_run())
