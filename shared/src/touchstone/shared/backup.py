"""``touchstone backup`` / ``touchstone restore``: one instance's record to a file and back.

What is kept: the events stream (the system of record), the dead-letter stream, and the
key-value buckets whose loss a person would notice (``system``: settings and the instance's
kind; ``tokens``: API tokens; ``results``: what was published; ``ui``: the UI's shared key).
Not kept, on purpose: the commands work queue (the scheduler re-sends what a live attempt
needs), console lines (the full log of every finished attempt is in the object store), the
scheduler's lease, quotas and idempotency answers (all short-lived). Projections are not
kept either: they are rebuilt from the events (``touchstone projections rebuild``).

The file is JSON lines, read as hostile input:

* line 1, the header: ``{"format": "touchstone-backup", "version": 1, "namespace": ...,
  "created_at": ..., "streams": {name: {last_seq, messages}}, "buckets": {purpose: config}}``;
* then one line per message, ``{"t": "msg", "stream": "events", "seq", "subject",
  "headers", "data"}`` (data base64), and one per key, ``{"t": "kv", "bucket": "system",
  "key", "value"}``;
* the last line, ``{"t": "end", "records": N, "sha256": ...}``: the count and the SHA-256 of
  every line before it, so a truncated or altered file is refused before anything is written.

Every line is at most ``MAX_LINE_BYTES``; every field is checked (subjects inside the
namespace, known streams and buckets, key and header names, sizes). Restore goes into an
empty broker (or at least a namespace whose events stream is empty) and writes nothing until
the whole file has been checked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Literal

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from touchstone.shared.jetstream import MAX_EVENT_BYTES, LogLimits, provision
from touchstone.shared.subjects import Subjects, check_token

FORMAT = "touchstone-backup"
VERSION = 1
MAX_LINE_BYTES = 2 * 1024 * 1024
"""A base64 event of ``MAX_EVENT_BYTES`` and its envelope fit with room to spare."""
MAX_VALUE_BYTES = 1024 * 1024
MAX_HEADERS = 32
RESTORE_WINDOW = 256
"""Messages published at once while restoring (one connection keeps them in order; checked)."""

STREAMS = ("events", "deadletter")
"""The streams kept, by their role (the stream names carry the namespace)."""
BUCKETS = ("system", "tokens", "results", "ui")
"""The key-value buckets kept, by purpose."""

# what a restored message keeps of its headers: the server sets or checks the rest itself
# (a Nats-Msg-Id reused after its dedupe window is legitimate in the source stream but would
# be dropped as a duplicate when the whole stream is written back within seconds)
_DROPPED_HEADERS = re.compile(r"^Nats-(Msg-Id|Expected-.*)$", re.IGNORECASE)

HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
HeaderValue = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\r\n]*$")]
KvKey = Annotated[str, StringConstraints(pattern=r"^[-/_=.A-Za-z0-9]{1,256}$")]
B64 = Annotated[str, StringConstraints(max_length=MAX_LINE_BYTES, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class BackupError(ValueError):
    """The file is not a backup this version can restore, or the target is not empty."""


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StreamState(_Line):
    last_seq: int = Field(ge=0)
    messages: int = Field(ge=0)


class BucketConfig(_Line):
    description: str = Field("", max_length=256)
    history: int = Field(1, ge=1, le=64)
    ttl_s: float | None = Field(None, gt=0)


class Header(_Line):
    format: Literal["touchstone-backup"]
    version: int
    namespace: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    created_at: datetime
    streams: dict[Literal["events", "deadletter"], StreamState]
    buckets: dict[Literal["system", "tokens", "results", "ui"], BucketConfig]


class MessageLine(_Line):
    t: Literal["msg"]
    stream: Literal["events", "deadletter"]
    seq: int = Field(ge=1)
    subject: str = Field(max_length=512)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=MAX_HEADERS)
    data: B64


class KeyLine(_Line):
    t: Literal["kv"]
    bucket: Literal["system", "tokens", "results", "ui"]
    key: KvKey
    value: B64


class EndLine(_Line):
    t: Literal["end"]
    records: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@dataclass
class Summary:
    """What a backup holds or a restore wrote."""

    namespace: str
    messages: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return ([f"stream {name}: {n} messages" for name, n in self.messages.items()]
                + [f"bucket {name}: {n} keys" for name, n in self.keys.items()])


def _stream_name(subjects: Subjects, role: str) -> str:
    return subjects.events_stream if role == "events" else subjects.dead_letter_stream


def _stream_prefix(subjects: Subjects, role: str) -> str:
    return f"{subjects.ns}.evt." if role == "events" else f"{subjects.ns}.dlq."


# --- backup -----------------------------------------------------------------------------


async def backup(js: JetStreamContext, subjects: Subjects, path: Path) -> Summary:
    """Write the instance's record to ``path`` (created new, mode 0600: it holds token
    digests); the streams up to their last sequence when the backup began."""
    states: dict[str, StreamState] = {}
    for role in STREAMS:
        info = await js.stream_info(_stream_name(subjects, role))
        states[role] = StreamState(last_seq=info.state.last_seq, messages=info.state.messages)
    buckets: dict[str, BucketConfig] = {}
    for purpose in BUCKETS:
        try:
            status = await (await js.key_value(subjects.bucket(purpose))).status()
        except (NotFoundError, BucketNotFoundError):  # a bucket its service never created
            continue
        config = status.stream_info.config
        buckets[purpose] = BucketConfig(description=config.description or "", history=status.history or 1,
                                        ttl_s=status.ttl or None)
    header = Header(format=FORMAT, version=VERSION, namespace=subjects.ns, created_at=datetime.now(UTC),
                    streams=states, buckets=buckets)
    summary = Summary(subjects.ns)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        digest = hashlib.sha256()
        records = 0

        def emit(line: _Line) -> None:
            nonlocal records
            raw = line.model_dump_json(exclude_none=False).encode() + b"\n"
            if len(raw) > MAX_LINE_BYTES:
                raise BackupError(f"a record of {len(raw)} bytes exceeds the format's line limit")
            out.write(raw)
            digest.update(raw)
            records += 1

        emit(header)
        for role in STREAMS:
            count = 0
            async for msg in stream_messages(js, _stream_name(subjects, role), _stream_prefix(subjects, role) + ">",
                                       states[role].last_seq):
                emit(MessageLine(t="msg", stream=role, seq=msg.metadata.sequence.stream,
                                 subject=msg.subject, headers=dict(msg.headers or {}),
                                 data=base64.b64encode(msg.data or b"").decode()))
                count += 1
            summary.messages[role] = count
        for purpose in buckets:
            count = 0
            kv = await js.key_value(subjects.bucket(purpose))
            for key, value in await _entries(kv):
                emit(KeyLine(t="kv", bucket=purpose, key=key,
                             value=base64.b64encode(value).decode()))
                count += 1
            summary.keys[purpose] = count
        end = EndLine(t="end", records=records, sha256=digest.hexdigest())
        out.write(end.model_dump_json().encode() + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return summary


async def stream_messages(js: JetStreamContext, stream: str, subject: str, last_seq: int) -> AsyncIterator[Msg]:
    """Every message of ``stream`` on ``subject`` up to ``last_seq``, in order (one ordered
    consumer, at most a thousand messages held at once). Ends early when nothing is pending
    (messages that expired meanwhile, as dead letters do)."""
    if last_seq == 0:
        return
    info = await js.stream_info(stream)
    if info.state.messages == 0 or info.state.first_seq > last_seq:
        return
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=1000)

    async def enqueue(msg: Msg) -> None:
        await queue.put(msg)

    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, cb=enqueue,
                             config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL))
    try:
        while True:
            msg = await asyncio.wait_for(queue.get(), timeout=30)
            seq = msg.metadata.sequence.stream
            if seq > last_seq:
                return
            yield msg
            if seq == last_seq or msg.metadata.num_pending == 0:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _entries(kv: KeyValue) -> list[tuple[str, bytes]]:
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    out = []
    for key in sorted(keys):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # deleted meanwhile
            continue
        out.append((key, entry.value or b""))
    return out


# --- reading a backup -------------------------------------------------------------------


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise BackupError(f"a line is longer than {MAX_LINE_BYTES} bytes")
        if not raw.endswith(b"\n"):
            raise BackupError("the file ends in the middle of a line (truncated?)")
        yield raw


def _decode(raw: bytes, what: str, max_bytes: int) -> bytes:
    try:
        data = base64.b64decode(raw, validate=True)
    except ValueError as e:
        raise BackupError(f"{what}: not base64") from e
    if len(data) > max_bytes:
        raise BackupError(f"{what}: {len(data)} bytes, more than {max_bytes}")
    return data


@dataclass
class Contents:
    header: Header
    messages: list[MessageLine]
    keys: list[KeyLine]


def read_backup(path: Path) -> Contents:
    """Check every line of ``path`` and return what it holds; raises ``BackupError`` on a
    file that is not a complete, unaltered backup of a known version."""
    with path.open("rb") as stream:
        lines = _lines(stream)
        first = next(lines, None)
        if first is None:
            raise BackupError("the file is empty")
        digest = hashlib.sha256(first)
        try:
            probe = Header.model_validate_json(first)
        except ValidationError as e:
            raise BackupError(f"not a Touchstone backup header: {e.errors()[0]['msg']}") from None
        if probe.version != VERSION:
            raise BackupError(f"backup format version {probe.version}; this Touchstone reads version {VERSION}")
        subjects = Subjects(probe.namespace)
        messages: list[MessageLine] = []
        keys: list[KeyLine] = []
        records = 1
        end: EndLine | None = None
        for raw in lines:
            if end is not None:
                raise BackupError("data after the end record")
            try:
                line: MessageLine | KeyLine | EndLine = _parse(raw)
            except ValidationError as e:
                raise BackupError(f"record {records + 1}: {e.errors()[0]['msg']}") from None
            if isinstance(line, EndLine):
                end = line
                continue
            digest.update(raw)
            records += 1
            if isinstance(line, MessageLine):
                _check_message(subjects, probe, line, messages[-1] if messages else None)
                messages.append(line)
            else:
                if line.bucket not in probe.buckets:
                    raise BackupError(f"key {line.key!r} of a bucket the header does not list ({line.bucket})")
                _decode(line.value.encode(), f"key {line.key}", MAX_VALUE_BYTES)
                keys.append(line)
        if end is None:
            raise BackupError("no end record: the file is truncated")
        if end.records != records or end.sha256 != digest.hexdigest():
            raise BackupError("the end record does not match the file: it was altered or cut")
        for role, state in probe.streams.items():
            found = sum(1 for m in messages if m.stream == role)
            if found > state.messages:  # fewer is possible: dead letters expire during a backup
                raise BackupError(f"stream {role}: {found} messages, the header says {state.messages}")
        return Contents(probe, messages, keys)


_RECORD: TypeAdapter[MessageLine | KeyLine | EndLine] = TypeAdapter(
    Annotated[MessageLine | KeyLine | EndLine, Field(discriminator="t")])


def _parse(raw: bytes) -> MessageLine | KeyLine | EndLine:
    return _RECORD.validate_json(raw)


def _check_message(subjects: Subjects, header: Header, line: MessageLine, before: MessageLine | None) -> None:
    prefix = _stream_prefix(subjects, line.stream)
    rest = line.subject.removeprefix(prefix)
    if rest == line.subject or not rest or any(not _token_ok(t) for t in rest.split(".")):
        raise BackupError(f"message {line.seq}: subject {line.subject!r} is outside {prefix}>")
    if line.stream not in header.streams or line.seq > header.streams[line.stream].last_seq:
        raise BackupError(f"message {line.seq} of {line.stream}: beyond what the header lists")
    if before is not None and before.stream == line.stream and line.seq <= before.seq:
        raise BackupError(f"message {line.seq} of {line.stream}: out of order")
    limit = MAX_EVENT_BYTES if line.stream == "events" else LogLimits().max_msg_bytes * 8
    _decode(line.data.encode(), f"message {line.seq}", limit)


def _token_ok(token: str) -> bool:
    try:
        check_token(token)
    except ValueError:
        return False
    return True


# --- restore ----------------------------------------------------------------------------


async def restore(js: JetStreamContext, path: Path, *, replicas: int = 1, logs: LogLimits | None = None,
                  contents: Contents | None = None) -> Summary:
    """Check ``path`` (unless ``contents`` is what ``read_backup`` made of it), then provision
    its namespace and write its messages and keys back. Refused when the namespace's events
    stream already holds anything."""
    contents = contents or read_backup(path)
    subjects = Subjects(contents.header.namespace)
    try:
        info = await js.stream_info(subjects.events_stream)
    except NotFoundError:
        pass
    else:
        if info.state.messages:
            raise BackupError(f"namespace {subjects.ns} already holds {info.state.messages} events: "
                              "restore goes into an empty broker (or a namespace never used)")
    await provision(js, subjects, replicas=replicas, logs=logs)
    summary = Summary(subjects.ns)
    last: dict[str, int] = {}
    for start in range(0, len(contents.messages), RESTORE_WINDOW):
        window = contents.messages[start:start + RESTORE_WINDOW]
        acks = await asyncio.gather(*(
            js.publish(line.subject, base64.b64decode(line.data), stream=_stream_name(subjects, line.stream),
                       headers={k: v for k, v in line.headers.items() if not _DROPPED_HEADERS.match(k)} or None)
            for line in window
        ))
        for line, ack in zip(window, acks, strict=True):
            if ack.seq <= last.get(line.stream, 0):  # the record's order is its meaning
                raise BackupError(f"stream {line.stream} stored a message out of order at {ack.seq}")
            last[line.stream] = ack.seq
            summary.messages[line.stream] = summary.messages.get(line.stream, 0) + 1
    for purpose, config in contents.header.buckets.items():
        kv = await _bucket(js, subjects, purpose, config, replicas)
        for key_line in (k for k in contents.keys if k.bucket == purpose):
            await kv.put(key_line.key, base64.b64decode(key_line.value))
            summary.keys[purpose] = summary.keys.get(purpose, 0) + 1
    return summary


async def _bucket(js: JetStreamContext, subjects: Subjects, purpose: str, config: BucketConfig,
                  replicas: int) -> KeyValue:
    name = subjects.bucket(purpose)
    with contextlib.suppress(NotFoundError, BucketNotFoundError):  # else created, as its service would
        return await js.key_value(name)
    return await js.create_key_value(api.KeyValueConfig(
        bucket=name, description=config.description, history=config.history,
        ttl=config.ttl_s, storage=api.StorageType.FILE, replicas=replicas,
    ))
