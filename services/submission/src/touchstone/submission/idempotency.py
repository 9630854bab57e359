"""Shared state of every API replica: answers by ``Idempotency-Key``, and the UI's CSRF key.

``Idempotency-Key`` on every POST: a retried request gets the first answer, not a second
submission.

A POST carrying the header is recorded in a NATS KV bucket (``{ns}_idempotency``, kept a day),
under the digest of (the caller's credential, the path, the key), so every API replica sees it:

* the same key with the same body gets the stored answer (status, body, ``Location``), with
  ``Idempotent-Replayed: true``, and the handler does not run again;
* the same key with another body is refused (422): a key names one request;
* while the first is still being answered, a repeat gets 409 (retry shortly);
* a server error or a 429 is not kept: the retry runs again.

Without the header a POST runs as before. Credentials are part of the record's name, so one
caller can never replay another's answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import nats
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import SecretStr
from touchstone.shared.jetstream import open_bucket
from touchstone.shared.subjects import Bucket, Subjects

HEADER = b"idempotency-key"
KEEP_S = 86_400.0
PENDING_STALE_S = 120.0
MAX_KEY = 255
MAX_STORED_BODY = 256 * 1024
KEPT_HEADERS = (b"content-type", b"location")


async def open_idempotency_bucket(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    return await open_bucket(js, subjects, api.KeyValueConfig(
        bucket=subjects.bucket(Bucket.IDEMPOTENCY), description="Touchstone: answers to POSTs by Idempotency-Key",
        history=1, storage=api.StorageType.FILE, ttl=KEEP_S,
    ))


def _problem(status: int, detail: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
    return status, [(b"content-type", b"application/problem+json")], body


async def _reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def idempotency_middleware(kv: KeyValue, max_body: int) -> Any:
    """The ASGI middleware factory for Litestar's ``middleware=[...]``."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
            key = headers.get(HEADER)
            if scope["type"] != "http" or scope.get("method") != "POST" or key is None:
                await app(scope, receive, send)
                return
            await _handle(app, kv, max_body, scope, receive, send, key, headers)

        return middleware

    return factory


async def _read_body(receive: Receive, max_body: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _handle(app: ASGIApp, kv: KeyValue, max_body: int, scope: Scope, receive: Receive, send: Send,
                  key: bytes, headers: dict[bytes, bytes]) -> None:
    if not key or len(key) > MAX_KEY or not key.isascii() or not key.decode().isprintable():
        await _reply(send, *_problem(400, f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters"))
        return
    body = await _read_body(receive, max_body)
    if body is None:
        await _reply(send, *_problem(413, f"request body larger than {max_body} bytes"))
        return
    credential = headers.get(b"authorization") or headers.get(b"cookie") or b""
    name = hashlib.sha256(b"\0".join([credential, scope["path"].encode(), key])).hexdigest()
    fingerprint = hashlib.sha256(body).hexdigest()
    try:
        claimed = await _claim(kv, name, fingerprint)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        await _reply(send, *_problem(503, "idempotency store unavailable; try again"))
        return
    if claimed is not None:
        await _reply(send, *claimed)
        return
    await _run_and_keep(app, kv, scope, body, send, name, fingerprint)


async def _claim(kv: KeyValue, name: str, fingerprint: str) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """None when this request may run (it holds the key now); else the answer to send."""
    pending = json.dumps({"fp": fingerprint, "state": "pending", "at": time.time()}).encode()
    for _ in range(3):
        try:
            entry = await kv.get(name)
        except KeyNotFoundError:
            try:
                await kv.create(name, pending)
                return None
            except (KeyWrongLastSequenceError, nats.js.errors.APIError):
                continue
        record = json.loads(entry.value or b"{}")
        if record.get("fp") != fingerprint:
            return _problem(422, "this Idempotency-Key was used with another request body")
        if record.get("state") == "done":
            kept = [(k.encode(), v.encode()) for k, v in record["headers"]]
            return record["status"], [*kept, (b"idempotent-replayed", b"true")], base64.b64decode(record["body"])
        if time.time() - float(record.get("at", 0)) < PENDING_STALE_S:
            return _problem(409, "a request with this Idempotency-Key is still being answered; retry shortly")
        try:  # the first try died while pending: this one takes over
            await kv.update(name, pending, last=entry.revision)
            return None
        except (KeyWrongLastSequenceError, nats.js.errors.APIError):
            continue
    return _problem(409, "a request with this Idempotency-Key is still being answered; retry shortly")


async def _run_and_keep(app: ASGIApp, kv: KeyValue, scope: Scope, body: bytes, send: Send, name: str,
                        fingerprint: str) -> None:
    sent = False
    status, kept, parts = 500, [], []

    async def replay_receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def capture(message: Message) -> None:
        nonlocal status, kept
        if message["type"] == "http.response.start":
            status = message["status"]
            kept = [(k.decode(), v.decode()) for k, v in message.get("headers", []) if k.lower() in KEPT_HEADERS]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
        await send(message)

    try:
        await app(scope, replay_receive, capture)
    finally:
        answer = b"".join(parts)
        if status >= 500 or status == 429 or len(answer) > MAX_STORED_BODY:
            await kv.delete(name)
        else:
            record = {"fp": fingerprint, "state": "done", "status": status, "headers": kept,
                      "body": base64.b64encode(answer).decode()}
            await kv.put(name, json.dumps(record).encode())


async def shared_ui_key(js: JetStreamContext, subjects: Subjects, configured: SecretStr | None) -> bytes:
    """The key of the UI's CSRF tokens, the same in every replica: the setting, else one made
    by the first replica and kept in the ``{ns}_ui`` bucket (every other replica reads it)."""
    if configured is not None and configured.get_secret_value():
        return hashlib.sha256(configured.get_secret_value().encode()).digest()
    kv = await open_bucket(js, subjects, api.KeyValueConfig(
        bucket=subjects.bucket(Bucket.UI), description="Touchstone UI secrets", history=1,
        storage=api.StorageType.FILE))
    try:
        await kv.create("csrf_key", base64.b64encode(secrets.token_bytes(32)))
    except (KeyWrongLastSequenceError, nats.js.errors.APIError):
        pass  # another replica made it first: use theirs
    entry = await kv.get("csrf_key")
    return base64.b64decode(entry.value or b"")
