"""Publishing to JetStream without awaiting each acknowledgement, for placement's batches."""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from touchstone.shared import events as ev
from touchstone.shared.errors import UnavailableError
from touchstone.shared.publisher import EventPublisher


class PublishRefused(Exception):
    """JetStream refused a publish (``err_code`` 10071: wrong last sequence)."""

    def __init__(self, err_code: int | None, description: str) -> None:
        super().__init__(f"{err_code}: {description}")
        self.err_code = err_code


class Pipeline:
    """Publishes to JetStream without awaiting each acknowledgement: every reply comes back on
    one inbox subscription and resolves its publish's future (nats-py's own ``publish_async``
    leaves the future pending when the reply is an error, such as a wrong last sequence)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._count = 0

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[int]:
        """Send one message; the future holds its stream sequence or why it was refused."""
        if not self._prefix:
            self._prefix = f"{self.nc.new_inbox()}."
            await self.nc.subscribe(f"{self._prefix}*", cb=self._on_reply)
        self._count += 1
        token = str(self._count)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        await self.nc.publish(subject, data, reply=self._prefix + token, headers=headers)
        return future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoRespondersError())
            return
        try:
            body = json.loads(msg.data)
            error = body.get("error")
            if error:
                future.set_exception(PublishRefused(error.get("err_code"), str(error.get("description", ""))))
            else:
                future.set_result(int(body["seq"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            future.set_exception(UnavailableError(f"unreadable acknowledgement: {e!r}"))

    @staticmethod
    async def acks(futures: list[asyncio.Future[int]], timeout: float) -> list[int | BaseException]:
        """Each publish's stream sequence, or why it has none (refused, or no reply in time)."""
        if futures:
            await asyncio.wait(futures, timeout=timeout)
        out: list[int | BaseException] = []
        for future in futures:
            if not future.done():
                future.cancel()
                out.append(UnavailableError("no acknowledgement in time"))
            elif (error := future.exception()) is not None:
                out.append(error)
            else:
                out.append(future.result())
        return out


async def append_pipelined(
    pipeline: Pipeline, publisher: EventPublisher, appends: list[tuple[ev.Event, int]], *, timeout: float = 2.0
) -> list[int | BaseException]:
    """Publish many appends before awaiting any acknowledgement, each with its aggregate's
    expected last sequence (so at most one per aggregate makes sense in one call). Returns each
    one's stream sequence, or the error for the caller to settle through ``EventPublisher.append``
    (which retries with the same message id and tells a conflict from its own duplicate)."""
    subjects = publisher.subjects
    futures = []
    for event, expected in appends:
        headers = {
            "Nats-Msg-Id": event.event_id,
            "Nats-Expected-Stream": subjects.events_stream,
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Last-Subject-Sequence-Subject": subjects.aggregate_events(
                event.aggregate, event.aggregate_id
            ),
        }
        futures.append(await pipeline.publish(publisher.subject_of(event), ev.encode_event(event), headers))
    return await pipeline.acks(futures, timeout)
