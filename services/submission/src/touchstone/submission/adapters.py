"""The service's edges: the system settings and GPU catalog in NATS KV, console logs in the
logs stream, artifacts in the local artifacts directory. Nothing past here sees a NATS entry
or a file URI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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
    UnavailableError,
)
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
    stream keeps them, else the collected log file in the artifacts directory."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, artifacts: ArtifactFiles) -> None:
        self.js = js
        self.subjects = subjects
        self.artifacts = artifacts

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
        subject = self._subject(task)
        last = await self._last_seq(subject)
        if last == 0:
            return self._from_file(task, n)
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

    def _from_file(self, task: TaskView, n: int | None) -> list[str]:
        path = self.artifacts.local_path(task.log_uri) if task.log_uri else None
        if path is None or not path.is_file():
            return []
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return list(deque((line.rstrip("\n") for line in f), maxlen=n))

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
        (checked every ``poll_s``), ``stop`` is set or ``time.monotonic()`` passes ``until``."""
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


class ArtifactFiles:
    """Artifacts in local directories: the providers' staging ``{data_dir}/artifacts`` and the
    results service's local object store. Only files inside these roots are ever served."""

    def __init__(self, root: Path, *more_roots: Path) -> None:
        self.root = root.resolve()
        self.roots = (self.root, *(r.resolve() for r in more_roots))

    def local_path(self, uri: str | None) -> Path | None:
        """The file a ``file://`` URI or plain path names, if it lies inside the root."""
        if not uri:
            return None
        parts = urlsplit(uri)
        if parts.scheme == "file":
            raw = unquote(parts.path)
        elif parts.scheme == "":
            raw = uri
        else:
            return None
        path = Path(raw)
        if not path.is_absolute():
            path = self.root / path
        resolved = path.resolve()
        return resolved if any(resolved.is_relative_to(r) for r in self.roots) else None

    def find(self, task: TaskView, name: str) -> Path | str:
        """A local file to send, or a remote http(s) URL to redirect to."""
        uri = task.artifacts.get(name)
        if uri is None:
            uri = str(Path(task.submission_id) / task.task_id / name)
        if urlsplit(uri).scheme in ("http", "https"):
            return uri
        path = self.local_path(uri)
        if path is None or not path.is_file():
            raise NotFoundError(f"no artifact {name} for task {task.task_id}")
        return path
