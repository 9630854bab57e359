"""``python -m touchstone.agent [--host NAME]``: run the agent until SIGINT/SIGTERM.

The agent needs no store and no JetStream rights: it only connects to NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from touchstone.agent.config import AgentSettings
from touchstone.agent.connection import connect_agent
from touchstone.agent.service import Agent
from touchstone.shared.logs import setup_logging
from touchstone.shared.subjects import Subjects


async def main(settings: AgentSettings) -> None:
    nc = await connect_agent(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Agent(settings, nc, Subjects(settings.namespace)).run(stop)
    finally:
        await nc.drain()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="touchstone-agent", description=__doc__)
    parser.add_argument("--host", help="this host's name (default: TOUCHSTONE_HOST or the hostname)")
    args = parser.parse_args(argv)
    settings = AgentSettings(**({"host": args.host} if args.host else {}))
    setup_logging(f"agent-{settings.host}", level=settings.log_level, json_lines=settings.log_json)
    asyncio.run(main(settings))


if __name__ == "__main__":
    cli()
