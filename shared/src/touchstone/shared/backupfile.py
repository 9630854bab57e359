"""The backup file (``touchstone backup`` writes it, ``touchstone restore`` reads it): its
records and the one reader, which treats the file as hostile input.

The file is JSON lines:

* line 1, the header: ``{"format": "touchstone-backup", "version": 1, "namespace": ...,
  "created_at": ..., "streams": {name: {last_seq, messages}}, "buckets": {purpose: config}}``;
* then one line per message, ``{"t": "msg", "stream": "events", "seq", "subject",
  "headers", "data"}`` (data base64), and one per key, ``{"t": "kv", "bucket": "system",
  "key", "value"}``;
* the last line, ``{"t": "end", "records": N, "sha256": ...}``: the count and the SHA-256 of
  every line before it, so a truncated or altered file is refused before anything is written.

Every line is at most ``MAX_LINE_BYTES``; every field is checked (subjects inside the
namespace, known streams and buckets, key and header names, sizes).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from touchstone.shared.jetstream import MAX_EVENT_BYTES, LogLimits
from touchstone.shared.subjects import Subjects, check_token

FORMAT = "touchstone-backup"
VERSION = 1
MAX_LINE_BYTES = 2 * 1024 * 1024
"""A base64 event of ``MAX_EVENT_BYTES`` and its envelope fit with room to spare."""
MAX_VALUE_BYTES = 1024 * 1024
MAX_HEADERS = 32

STREAMS = ("events", "deadletter")
"""The streams kept, by their role (the stream names carry the namespace)."""
KeptBucket = Literal["system", "tokens", "results", "ui"]
"""The key-value buckets kept, by purpose (``subjects.Bucket``'s values)."""
BUCKETS: tuple[KeptBucket, ...] = get_args(KeptBucket)

HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
HeaderValue = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\r\n]*$")]
KvKey = Annotated[str, StringConstraints(pattern=r"^[-/_=.A-Za-z0-9]{1,256}$")]
B64 = Annotated[str, StringConstraints(max_length=MAX_LINE_BYTES, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class BackupError(ValueError):
    """The file is not a backup this version can restore, or the target is not empty."""


class Record(BaseModel):
    """One line of the file: strict, no field it does not name."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StreamState(Record):
    last_seq: int = Field(ge=0)
    messages: int = Field(ge=0)


class BucketConfig(Record):
    description: str = Field("", max_length=256)
    history: int = Field(1, ge=1, le=64)
    ttl_s: float | None = Field(None, gt=0)


class Header(Record):
    format: Literal["touchstone-backup"]
    version: int
    namespace: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    created_at: datetime
    streams: dict[Literal["events", "deadletter"], StreamState]
    buckets: dict[KeptBucket, BucketConfig]


class MessageLine(Record):
    t: Literal["msg"]
    stream: Literal["events", "deadletter"]
    seq: int = Field(ge=1)
    subject: str = Field(max_length=512)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=MAX_HEADERS)
    data: B64


class KeyLine(Record):
    t: Literal["kv"]
    bucket: KeptBucket
    key: KvKey
    value: B64


class EndLine(Record):
    t: Literal["end"]
    records: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")



def stream_prefix(subjects: Subjects, role: str) -> str:
    return (subjects.all_events if role == "events" else subjects.all_dead_letters).removesuffix(">")



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
    prefix = stream_prefix(subjects, line.stream)
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
