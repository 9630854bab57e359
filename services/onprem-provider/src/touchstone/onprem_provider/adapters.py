"""Talking to agents over NATS: commands as requests on ``{ns}.agent.{host}.cmd``, reports
from ``{ns}.agent.*.evt``. Transport errors become ours here; nothing past this module sees
a NATS message."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from touchstone.shared.agents import (
    CommandReply,
    decode_agent_report,
    decode_reply,
    encode,
)
from touchstone.shared.commands import Command
from touchstone.shared.consumer import Delivery, Handler
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


async def listen_to_agents(nc: NATS, subjects: Subjects, handlers: Mapping[str, Handler]) -> Subscription:
    """Every agent's reports, each to the handler of its type (``REPORTS`` bound). Core NATS
    has no stream: a report's ``Delivery`` is its subject, delivered once, sequence 0. An
    agent may only publish on its own subjects, so the subject, not the body, says who sent
    it (``sender``)."""

    async def receive(msg: Msg) -> None:
        try:
            report = decode_agent_report(msg.data)
        except ValueError as e:
            log.warning("dropping agent report on %s: %s", msg.subject, e)
            return
        handler = None if report is None else handlers.get(report.type)
        if handler is not None:
            await handler(report, Delivery(subject=msg.subject, stream_seq=0, num_delivered=1, num_pending=0))

    return await nc.subscribe(subjects.all_agent_reports, cb=receive)


def sender(delivery: Delivery) -> str:
    """The host whose report subject (``{ns}.agent.{host}.evt``) a report came on."""
    return delivery.subject.split(".")[-2]
