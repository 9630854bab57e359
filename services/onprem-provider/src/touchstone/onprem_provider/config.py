"""The on-prem provider's settings: one typed object built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>``; tests build
``ProviderSettings(...)`` directly.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict
from touchstone.shared.objects.config import ObjectStoreSettings


class ProviderSettings(ObjectStoreSettings):
    """Settings of one on-prem provider process (the object store's, whose upload grants it
    hands to agents with each launch, come from ``ObjectStoreSettings``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    agent_command_timeout_s: float = 20.0
    """Longest wait for an agent's answer to a command (a terminate waits out the kill grace)."""

    agent_timeout_s: float = 30.0
    """A live attempt whose agent has sent nothing for this long fails (infrastructure)."""

    sweep_interval_s: float = 2.0
    """How often silent agents are looked for."""

    max_deliver: int = 5
    """Tries of one command; a launch whose agent never answered then fails the attempt."""

    ack_wait_s: float = 30.0
    """Seconds a command may be in flight before JetStream redelivers it."""
