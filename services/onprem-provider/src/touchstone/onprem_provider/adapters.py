"""Talking to agents over NATS: commands as requests on ``{ns}.agent.{host}.cmd``, reports
from ``{ns}.agent.*.evt``. Transport errors become ours here; nothing past this module sees
a NATS message."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from touchstone.shared.agents import (
    CommandReply,
    decode_reply,
    encode,
)
from touchstone.shared.commands import Command
from touchstone.shared.errors import UnavailableError
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)


class AgentClient:
    """Sends commands to one agent at a time and returns its answer."""

    def __init__(self, nc: NATS, subjects: Subjects, *, timeout_s: float) -> None:
        self.nc = nc
        self.subjects = subjects
        self.timeout_s = timeout_s

    async def send(self, host: str, command: Command) -> CommandReply:
        subject = self.subjects.agent_commands(host)
        try:
            msg = await self.nc.request(subject, encode(command), timeout=self.timeout_s)
        except NoRespondersError as e:
            raise UnavailableError(f"agent {host} is not connected") from e
        except (NatsTimeoutError, TimeoutError) as e:
            raise UnavailableError(f"agent {host} did not answer within {self.timeout_s:.0f}s") from e
        try:
            return decode_reply(msg.data)
        except ValueError as e:
            raise UnavailableError(f"agent {host} answered nonsense: {e}") from e


