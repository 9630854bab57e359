"""The agent's NATS connection, with its own user (``deploy/nats/agent-user.py``) when one is
set (``nats_user``, ``nats_password`` or ``nats_password_file``, TLS: the shared NATS settings);
``touchstone up`` gives the local agent such a user too. ``nats_url`` may
list several servers, comma-separated.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from touchstone.agent.config import AgentSettings
from touchstone.shared.jetstream import connect_with


async def connect_agent(settings: AgentSettings, *, connect_timeout: float = 5.0) -> NATS:
    """A client for this agent that reconnects forever, quickly, and logs what happens to it."""
    return await connect_with(settings, f"agent-{settings.host}", connect_timeout=connect_timeout)
