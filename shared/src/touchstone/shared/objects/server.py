"""The embedded store's upload endpoint: ``PUT {base}/{key}`` with ``Authorization: Bearer
<grant token>``, as an ASGI app (the submission API mounts it at ``/objects``).

Every upload is checked against its grant before a byte is stored: the signature, the expiry,
the key (safe, under the grant's prefix) and the size (the declared ``Content-Length`` first,
then the bytes actually received, so a lying or chunked body is cut off at the cap). The body
goes to a temporary file beside its destination and is renamed into place only when complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from touchstone.shared.objects.grants import GrantRefused, GrantSigner, utcnow
from touchstone.shared.objects.keys import UnsafeKey
from touchstone.shared.objects.stores import LocalObjectStore

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class TooLarge(Exception):
    pass


def upload_app(
    store: LocalObjectStore, signer: GrantSigner, *, mount: str = "/objects", clock: Callable[[], datetime] = utcnow
) -> Callable[[Scope, Receive, Send], Any]:
    """The ASGI app; ``mount`` is stripped from the request path when it is there."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "PUT":
            await _answer(send, 405, "only PUT", [(b"allow", b"PUT")])
            return
        raw = scope.get("raw_path")  # as sent: a framework's mount may rewrite ``path``
        path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope.get("path", ""))
        key = path.removeprefix(mount + "/") if path.startswith(mount + "/") else path.removeprefix("/")
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            await _answer(send, 401, "an upload grant is required")
            return
        try:
            claims = signer.check(token.strip(), key, clock())
            declared = int(headers.get(b"content-length", b"-1") or -1)
        except (GrantRefused, UnsafeKey) as e:
            await _answer(send, 403, str(e))
            return
        except ValueError:
            await _answer(send, 400, "bad Content-Length")
            return
        if declared > claims.max_bytes:
            await _answer(send, 413, f"larger than the grant's {claims.max_bytes} bytes")
            return
        try:
            size = await _store(store.path(key), receive, claims.max_bytes)
        except TooLarge:
            await _answer(send, 413, f"larger than the grant's {claims.max_bytes} bytes")
            return
        except ConnectionError:
            return  # the client went away; nothing was stored
        await _answer(send, 201, json.dumps({"key": key, "size": size}))

    return app


async def _store(dest: Path, receive: Receive, max_bytes: int) -> int:
    """The request body into ``dest`` (atomic), at most ``max_bytes``."""
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError("client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge()
                if chunk:
                    await asyncio.to_thread(out.write, chunk)
                if not message.get("more_body"):
                    break
        await asyncio.to_thread(os.replace, tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


async def _answer(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
