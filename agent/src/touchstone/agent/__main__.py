"""``python -m touchstone.agent [--host NAME]``: run the agent until SIGINT/SIGTERM.

The agent needs no store and no JetStream rights: it only connects to NATS. With
``metrics_port`` set, ``/healthz``, ``/readyz`` (NATS connected, the agent running) and
``/metrics`` answer on ``metrics_host:metrics_port``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from nats.aio.client import Client as NATS
from touchstone.agent.config import AgentSettings
from touchstone.agent.connection import connect_agent
from touchstone.agent.service import Agent
from touchstone.shared.health import LOOPS, HealthServer
from touchstone.shared.logs import setup_logging
from touchstone.shared.subjects import Subjects


async def main(settings: AgentSettings) -> None:
    loop = asyncio.get_running_loop()
    connected: list[NATS] = []

    async def ready() -> dict[str, Any]:
        if not connected:
            return {"nats": "connecting"}
        return {"nats": True if connected[0].is_connected else "not connected", **LOOPS.checks()}

    health = (
        HealthServer(settings.metrics_host, settings.metrics_port, loop, ready).start()
        if settings.metrics_port else None
    )
    try:
        nc = await connect_agent(settings)
        connected.append(nc)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            with LOOPS.running("agent"):
                await Agent(settings, nc, Subjects(settings.namespace)).run(stop)
        finally:
            await nc.drain()
    finally:
        if health is not None:
            health.close()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="touchstone-agent", description=__doc__)
    parser.add_argument("--host", help="this host's name (default: TOUCHSTONE_HOST or the hostname)")
    args = parser.parse_args(argv)
    settings = AgentSettings(**({"host": args.host} if args.host else {}))
    setup_logging(f"agent-{settings.host}", level=settings.log_level, json_lines=settings.log_json)
    asyncio.run(main(settings))


if __name__ == "__main__":
    cli()
