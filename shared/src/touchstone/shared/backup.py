"""``touchstone backup`` / ``touchstone restore``: one instance's record to a file and back.

What is kept: the events stream (the system of record), the dead-letter stream, and the
key-value buckets whose loss a person would notice (``system``: settings and the instance's
kind; ``tokens``: API tokens; ``results``: what was published; ``ui``: the UI's shared key).
Not kept, on purpose: the commands work queue (the scheduler re-sends what a live attempt
needs), console lines (the full log of every finished attempt is in the object store), the
scheduler's lease, quotas and idempotency answers (all short-lived). Projections are not
kept either: they are rebuilt from the events (``touchstone projections rebuild``).

The file's format and its checks are ``backupfile``. Restore goes into an empty broker (or at
least a namespace whose events stream is empty) and writes nothing until the whole file has
been checked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from touchstone.shared.backupfile import (
    BUCKETS,
    FORMAT,
    MAX_LINE_BYTES,
    STREAMS,
    VERSION,
    BackupError,
    BucketConfig,
    Contents,
    EndLine,
    Header,
    KeptBucket,
    KeyLine,
    MessageLine,
    Record,
    StreamState,
    read_backup,
    stream_prefix,
)
from touchstone.shared.jetstream import LogLimits, existing_bucket, open_bucket, provision, stream_messages
from touchstone.shared.subjects import Bucket, Subjects

__all__ = ["BackupError", "Summary", "backup", "read_backup", "restore"]

RESTORE_WINDOW = 256
"""Messages published at once while restoring (one connection keeps them in order; checked)."""

# what a restored message keeps of its headers: the server sets or checks the rest itself
# (a Nats-Msg-Id reused after its dedupe window is legitimate in the source stream but would
# be dropped as a duplicate when the whole stream is written back within seconds)
_DROPPED_HEADERS = re.compile(r"^Nats-(Msg-Id|Expected-.*)$", re.IGNORECASE)


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



# --- backup -----------------------------------------------------------------------------


async def backup(js: JetStreamContext, subjects: Subjects, path: Path) -> Summary:
    """Write the instance's record to ``path`` (created new, mode 0600: it holds token
    digests); the streams up to their last sequence when the backup began."""
    states: dict[str, StreamState] = {}
    for role in STREAMS:
        info = await js.stream_info(_stream_name(subjects, role))
        states[role] = StreamState(last_seq=info.state.last_seq, messages=info.state.messages)
    buckets: dict[KeptBucket, BucketConfig] = {}
    kvs: dict[KeptBucket, KeyValue] = {}
    for purpose in BUCKETS:
        if (kv := await existing_bucket(js, subjects.bucket(Bucket(purpose)))) is None:
            continue  # a bucket its service never created
        kvs[purpose] = kv
        status = await kv.status()
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

        def emit(line: Record) -> None:
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
            async for msg in stream_messages(js, _stream_name(subjects, role), stream_prefix(subjects, role) + ">",
                                       states[role].last_seq):
                emit(MessageLine(t="msg", stream=role, seq=msg.metadata.sequence.stream,
                                 subject=msg.subject, headers=dict(msg.headers or {}),
                                 data=base64.b64encode(msg.data or b"").decode()))
                count += 1
            summary.messages[role] = count
        for purpose, kv in kvs.items():
            count = 0
            for key, value in await _entries(js, kv, subjects.bucket(Bucket(purpose))):
                emit(KeyLine(t="kv", bucket=purpose, key=key,
                             value=base64.b64encode(value).decode()))
                count += 1
            summary.keys[purpose] = count
        end = EndLine(t="end", records=records, sha256=digest.hexdigest())
        out.write(end.model_dump_json().encode() + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return summary


async def _entries(js: JetStreamContext, kv: KeyValue, bucket: str) -> list[tuple[str, bytes]]:
    """Every live key of ``bucket`` with its value. The keys come from the bucket's stream
    (one subject per key), not from ``kv.keys()``: nats-py lists keys with a watcher that gives
    up after a timeout, so under load it can return part of them and a backup would miss keys."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    out = []
    for subject in sorted((info.state.subjects or {}).keys()):
        key = subject.removeprefix(prefix)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # deleted or purged: nothing to keep
            continue
        out.append((key, entry.value or b""))
    return out


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
        kv = await open_bucket(js, subjects, api.KeyValueConfig(  # created as its service would
            bucket=subjects.bucket(Bucket(purpose)), description=config.description, history=config.history,
            ttl=config.ttl_s, storage=api.StorageType.FILE, replicas=replicas,
        ))
        for key_line in (k for k in contents.keys if k.bucket == purpose):
            await kv.put(key_line.key, base64.b64decode(key_line.value))
            summary.keys[purpose] = summary.keys.get(purpose, 0) + 1
    return summary
