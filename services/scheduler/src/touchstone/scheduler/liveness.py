"""What providers without agents say of the attempts they drive (``LiveAttempts``, RunPod's
replicas on ``{ns}.provider.*.live``): for stuck detection a name in such a report is a
heartbeat of that attempt, as a name in an agent's heartbeat is.

Kept apart from the agents' heartbeats (``adapters.listen_to_agents``): a provider is no host,
has no slots and is never placed on, so only the scheduler's ``last_seen`` learns from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from datetime import datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from touchstone.shared.providers import LiveAttempts, decode_live
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)


async def listen_to_providers(
    nc: NATS, subjects: Subjects, on_live: Callable[[LiveAttempts], None]
) -> Subscription:
    """Subscribe to every provider's live attempts; malformed reports, and reports that say
    they serve another namespace, are dropped."""

    async def receive(msg: Msg) -> None:
        try:
            report = decode_live(msg.data, msg.subject)
        except ValueError as e:
            log.warning("dropping a provider report on %s: %s", msg.subject, e)
            return
        if report.namespace not in (None, subjects.ns):
            log.warning("dropping a report of namespace %s on %s", report.namespace, msg.subject)
            return
        on_live(report)

    return await nc.subscribe(subjects.all_provider_live, cb=receive)


def note_live(last_seen: MutableMapping[str, datetime], report: LiveAttempts, now: datetime) -> None:
    """Every attempt the report names was heard of ``now``."""
    for name in report.running:
        last_seen[name] = now
