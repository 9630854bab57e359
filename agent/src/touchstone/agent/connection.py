"""The agent's NATS connection, with its own user (``deploy/nats/agent-user.py``) when one is
set (``nats_user``); without one (``make up``, tests) the server takes anyone. ``nats_url`` may
list several servers, comma-separated.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from touchstone.agent.config import AgentSettings
from touchstone.shared.jetstream import connect


async def connect_agent(settings: AgentSettings, *, connect_timeout: float = 5.0) -> NATS:
    """A client for this agent that reconnects forever, quickly, and logs what happens to it."""
    return await connect(
        settings.nats_url,
        f"agent-{settings.host}",
        connect_timeout=connect_timeout,
        user=settings.nats_user,
        password=settings.nats_password.get_secret_value(),
    )
