"""The service's edges: the system settings and GPU catalog in NATS KV, console logs in the
logs stream and the object store, artifacts in the object store. Nothing past here sees a
NATS entry, and nothing here follows a path or URL taken from an event."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError
from touchstone.shared.errors import (
    ConcurrencyConflict,
    InvalidInputError,
    NotFoundError,
    TouchstoneError,
    UnavailableError,
)
from touchstone.shared.lifecycle import TASK_FINAL
from touchstone.shared.objects.keys import UnsafeKey, check_under, log_key, task_prefix
from touchstone.shared.objects.stores import ObjectStore
from touchstone.shared.subjects import Subjects, task_aggregate_id
from touchstone.shared.system import (
    GPU_TYPES_KEY,
    SYSTEM_KEY,
    RunPodStatus,
    SystemSettings,
    read_runpod_status,
    read_system,
    write_system,
)
from touchstone.shared.views import TaskView

_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
)


class SystemStore:
    """The System tab's settings in the system KV bucket, changed with optimistic revisions,
    and what the providers report there (the GPU catalog, the RunPod account)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def read(self) -> tuple[SystemSettings, int]:
        try:
            return await read_system(self.kv)
        except _TRANSIENT as e:
            raise UnavailableError(f"system settings: {e!r}") from e

    async def update(self, changes: dict[str, Any], revision: int | None) -> tuple[SystemSettings, int]:
        """Apply ``changes``. With ``revision``, fail (409) if the settings moved past it;
        without, re-read and retry when another writer got in between."""
        for _ in range(5):
            current, seen = await self.read()
            if revision is not None and revision != seen:
                raise ConcurrencyConflict(f"system settings ({SYSTEM_KEY})", revision)
            try:
                new = SystemSettings.model_validate({**current.model_dump(), **changes})
            except ValidationError as e:
                raise InvalidInputError(f"invalid system settings: {e.errors()[0]['msg']}") from e
            try:
                return new, await write_system(self.kv, new, revision=seen)
            except KeyWrongLastSequenceError:
                if revision is not None:
                    raise ConcurrencyConflict(f"system settings ({SYSTEM_KEY})", revision) from None
            except _TRANSIENT as e:
                raise UnavailableError(f"system settings: {e!r}") from e
        raise UnavailableError("system settings keep changing; try again")

    async def gpu_types(self) -> list[dict[str, Any]]:
        """The RunPod GPU catalog the provider caches under ``gpu_types`` (empty when absent)."""
        try:
            entry = await self.kv.get(GPU_TYPES_KEY)
        except KeyNotFoundError:
            return []
        except _TRANSIENT as e:
            raise UnavailableError(f"gpu types: {e!r}") from e
        try:
            data = json.loads(entry.value or b"[]")
        except json.JSONDecodeError:
            return []
        if isinstance(data, dict):
            data = data.get("items") or data.get("gpu_types") or []
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    async def runpod_status(self) -> RunPodStatus | None:
        """The RunPod provider's last report under ``runpod_status`` (None: none reporting)."""
        try:
            return await read_runpod_status(self.kv)
        except _TRANSIENT as e:
            raise UnavailableError(f"runpod status: {e!r}") from e


def _lines(data: bytes) -> list[str]:
    """The console lines of one logs message (UTF-8 text, one or more lines)."""
    text = data.decode("utf-8", errors="replace")
    return text.splitlines() or [""]


class LogReader:
    """Console logs: ``{ns}.logs.{task aggregate}`` (one or more lines per message) while the
    task runs; once it has ended, each attempt's full log from the object store (the key is
    this service's own: ``objects.keys.log_key``, nothing taken from an event), so a log stays
    readable after the logs stream's retention. The stream answers for a task whose logs are
    not in the store (no upload grant, an older attempt)."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, objects: ObjectStore) -> None:
        self.js = js
        self.subjects = subjects
        self.objects = objects

    def _subject(self, task: TaskView) -> str:
        return self.subjects.logs(task_aggregate_id(task.submission_id, task.task_id))

    async def _last_seq(self, subject: str) -> int:
        try:
            msg = await self.js.get_last_msg(self.subjects.logs_stream, subject, direct=True)
        except JsNotFoundError:
            return 0
        except _TRANSIENT as e:
            raise UnavailableError(f"logs: {e!r}") from e
        return int(msg.seq or 0)

    async def tail(self, task: TaskView, n: int | None) -> list[str]:
        if task.status in TASK_FINAL:
            stored = await self.from_store(task, n)
            if stored is not None:
                return stored
        subject = self._subject(task)
        last = await self._last_seq(subject)
        if last == 0:
            return await self.from_store(task, n) or []
        kept: deque[str] = deque(maxlen=n)
        sub = await self.js.subscribe(
            subject,
            stream=self.subjects.logs_stream,
            ordered_consumer=True,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=5.0)
                kept.extend(_lines(msg.data))
                if msg.metadata.sequence.stream >= last:
                    break
        except nats.errors.TimeoutError as e:
            raise UnavailableError("the logs stream did not answer") from e
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return list(kept)

    async def from_store(self, task: TaskView, n: int | None) -> list[str] | None:
        """The last ``n`` lines of every attempt's stored log, in order; ``None`` when the store
        holds none of them."""
        kept: deque[str] = deque(maxlen=n)
        found = False
        for attempt in range(1, max(task.attempt, 1) + 1):
            key = log_key(task.submission_id, task.task_id, attempt)
            try:
                if await self.objects.size(key) is None:
                    continue
                found = True
                kept.extend([line async for line in _text_lines(self.objects.chunks(key))])
            except TouchstoneError as e:
                raise UnavailableError(f"logs: the object store: {e}") from e
        return list(kept) if found else None

    async def follow(
        self,
        task: TaskView,
        n: int | None,
        finished: Callable[[], Awaitable[bool]],
        stop: asyncio.Event,
        *,
        poll_s: float = 1.0,
        until: float | None = None,
    ) -> AsyncIterator[str]:
        """The last ``n`` lines, then each new line until ``finished()`` says the task is done
        (checked every ``poll_s``), ``stop`` is set or ``time.monotonic()`` passes ``until``.
        A task that has already ended gets its stored log, as ``tail`` gives it."""
        if task.status in TASK_FINAL:
            stored = await self.from_store(task, n)
            if stored is not None:
                for line in stored:
                    yield line
                return
        subject = self._subject(task)
        last = await self._last_seq(subject)
        sub = await self.js.subscribe(
            subject,
            stream=self.subjects.logs_stream,
            ordered_consumer=True,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
        )
        try:
            backlog: deque[str] = deque(maxlen=n)
            while last:
                msg = await sub.next_msg(timeout=5.0)
                backlog.extend(_lines(msg.data))
                if msg.metadata.sequence.stream >= last:
                    break
            for line in backlog:
                yield line
            checked = time.monotonic()
            while not stop.is_set() and (until is None or time.monotonic() < until):
                got: Msg | None
                try:
                    got = await sub.next_msg(timeout=poll_s)
                except nats.errors.TimeoutError:
                    got = None
                if got is not None:
                    for line in _lines(got.data):
                        yield line
                if got is None or time.monotonic() - checked >= poll_s:
                    checked = time.monotonic()
                    if await finished():
                        # drain what arrived meanwhile, then end
                        with contextlib.suppress(nats.errors.TimeoutError):
                            while True:
                                msg = await sub.next_msg(timeout=0.2)
                                for line in _lines(msg.data):
                                    yield line
                        return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _text_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of a stored log, decoded as they stream in."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    async for chunk in chunks:
        rest += decoder.decode(chunk)
        *lines, rest = rest.split("\n")
        for line in lines:
            yield line
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


class Artifacts:
    """A task's artifacts in the object store. The key an event gave for a name is used only
    after ``objects.keys`` checks it lies under this task's own prefix; the bytes come from the
    store this service is configured with (never a path or URL from an event)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    async def find(self, task: TaskView, name: str) -> tuple[str, int]:
        """The key and size of the task's artifact ``name``; ``NotFoundError`` otherwise."""
        key = task.artifacts.get(name)
        try:
            checked = check_under(key, task_prefix(task.submission_id, task.task_id))
        except UnsafeKey as e:
            raise NotFoundError(f"no artifact {name} for task {task.task_id}") from e
        try:
            size = await self.objects.size(checked)
        except TouchstoneError as e:
            raise UnavailableError(f"artifacts: the object store: {e}") from e
        if size is None:
            raise NotFoundError(f"no artifact {name} for task {task.task_id}")
        return checked, size
