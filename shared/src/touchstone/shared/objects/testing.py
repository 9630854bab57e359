"""For tests: the embedded store's upload endpoint on a real port, and moto's S3 server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from touchstone.shared.natsserver import free_port
from touchstone.shared.objects.grants import GrantSigner
from touchstone.shared.objects.server import upload_app
from touchstone.shared.objects.stores import LocalObjectStore

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextlib.contextmanager
def serve_uploads(root: Path, signer: GrantSigner, **app_kwargs: Any) -> Iterator[LocalObjectStore]:
    """A local store at ``root`` taking uploads on a real port (uvicorn in a thread); the store's
    ``url`` is the endpoint and it issues grants with ``signer``."""
    import uvicorn

    port = free_port()
    store = LocalObjectStore(root, url=f"http://127.0.0.1:{port}/objects", signer=signer)
    config = uvicorn.Config(upload_app(store, signer, **app_kwargs), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield store
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server over real HTTP; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str, name: str) -> None:
    import boto3  # type: ignore[import-untyped]

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **S3_CREDENTIALS).create_bucket(Bucket=name)


async def put_bytes(store: Any, key: str, body: bytes) -> None:
    """Put ``body`` under ``key`` as a producer's upload would leave it (tests only)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        await store.put(key, Path(f.name))
