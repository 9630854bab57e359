"""The agent's NATS connection, with its own user (``deploy/nats/agent-user.py``).

Without ``nats_user`` this is the shared ``connect`` (``make up``, tests). With it, the user and
password go to nats-py as options rather than inside the URL: nats-py sends URL credentials only
to that URL's server, so after a failover to a cluster peer it learned of, it would log in
without them. ``nats_url`` may then list several servers, comma-separated.
"""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client as NATS
from touchstone.agent.config import AgentSettings
from touchstone.shared.jetstream import connect

log = logging.getLogger(__name__)


async def connect_agent(settings: AgentSettings, *, connect_timeout: float = 5.0) -> NATS:
    """A client for this agent that reconnects forever, quickly, and logs what happens to it."""
    name = f"agent-{settings.host}"
    if not settings.nats_user:
        return await connect(settings.nats_url, name, connect_timeout=connect_timeout)

    async def on_error(e: Exception) -> None:
        log.warning("nats error: %s", e, extra={"client": name})

    async def on_disconnect() -> None:
        log.warning("nats disconnected", extra={"client": name})

    async def on_reconnect() -> None:
        log.info("nats reconnected", extra={"client": name})

    return await nats.connect(
        servers=[url.strip() for url in settings.nats_url.split(",") if url.strip()],
        name=name,
        user=settings.nats_user,
        password=settings.nats_password.get_secret_value(),
        connect_timeout=connect_timeout,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
