"""Fixtures of the results service's tests: attempt outputs as a producer puts them in the store,
a local webhook receiver, moto's S3 server over real HTTP, and the ledger bucket cleaned up."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from touchstone.shared import events as ev
from touchstone.shared.objects import keys
from touchstone.shared.subjects import Bucket, task_aggregate_id

METRICS = {
    "interval_minutes": 60,
    "long": {"roc_auc": 0.61, "f1": 0.4, "backtest": {"trades": 120, "sharpe": 1.3}},
    "short": {"roc_auc": 0.58, "f1": 0.35, "backtest": {"trades": 95, "sharpe": -0.2}},
    "duration_s": 2.5,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mlflow: needs a real `mlflow server` process (one per test module)")


@dataclass
class Staged:
    """One attempt's outputs as its producer puts them into the store, and the event that
    names them by key."""

    event: ev.TrainingFinished
    files: dict[str, bytes]
    """object key -> bytes"""

    async def upload(self, store: Any, *, skip: tuple[str, ...] = ()) -> None:
        """What the producer does with its grant (here straight into the store)."""
        for key, body in self.files.items():
            if not key.endswith(skip):
                await store.put(key, _tmp_file(body))


def _tmp_file(body: bytes) -> Path:
    import tempfile

    fd, name = tempfile.mkstemp()
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    return Path(name)


def stage_attempt(submission_id: str, task_id: str, attempt: int = 1) -> Staged:
    """An attempt's outputs under its prefix and a ``TrainingFinished`` naming them by key."""
    prefix = keys.attempt_prefix(submission_id, task_id, attempt)
    outputs = {
        "models/long.pkl": b"long-model-" + uuid.uuid4().bytes,
        "models/short.pkl": b"short-model-" + uuid.uuid4().bytes * 100,
        "metrics.json": json.dumps(METRICS).encode(),
        "report.json": b'{"ok": true}',
    }
    files = {prefix + rel: body for rel, body in outputs.items()}
    log_body = "".join(f"epoch {i}: loss {1 / (i + 1):.3f}\n" for i in range(200)).encode()
    log_key = keys.log_key(submission_id, task_id, attempt)
    files[log_key] = log_body
    event = ev.TrainingFinished(
        aggregate_id=task_aggregate_id(submission_id, task_id),
        correlation_id=submission_id,
        submission_id=submission_id,
        task_id=task_id,
        attempt=attempt,
        metrics=METRICS,
        artifacts={Path(rel).name: prefix + rel for rel in outputs},
        log_key=log_key,
    )
    return Staged(event, files)


@pytest.fixture
def staged(tmp_path: Path) -> Staged:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    return stage_attempt(sid, "pi-60")


# --- a local webhook receiver ---------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers as told."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes = b"ok"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, body: bytes | dict[str, Any]) -> None:
        self.status = status
        self.body = json.dumps(body).encode() if isinstance(body, dict) else body

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()

    class Handle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            payload = json.loads(self.rfile.read(length) or b"null")
            with recv.lock:
                recv.received.append(payload)
            self.send_response(recv.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(recv.body)))
            self.end_headers()
            self.wfile.write(recv.body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recv.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield recv
    server.shutdown()
    server.server_close()


# --- moto's S3 server -----------------------------------------------------------------------

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server", reason="moto[s3] is not installed (results' dev group)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"touchstone-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **S3_CREDENTIALS).create_bucket(Bucket=name)
    return name


# --- NATS: the ledger bucket goes with the test's namespace ---------------------------------


@pytest.fixture
async def rjs(js: Any, subjects: Any) -> AsyncIterator[Any]:
    yield js
    try:
        await js.delete_key_value(subjects.bucket(Bucket.RESULTS))
    except Exception:
        pass


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> Any:
    from touchstone.results.adapters import S3ArtifactStore

    return S3ArtifactStore(s3_bucket, prefix="dev/", endpoint_url=s3_endpoint, timeout_s=10, max_attempts=1,
                           credentials=S3_CREDENTIALS)


@pytest.fixture
def stage(tmp_path: Path) -> Any:
    """``stage(submission_id, task_id, attempt=1)`` lays out one more attempt."""
    return stage_attempt


# --- a real SMTP server (aiosmtpd) --------------------------------------------------------


@dataclass
class Mailbox:
    """What the local SMTP server accepted: each message with its envelope recipients."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Any]:
        with self.lock:
            return list(self.messages)


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller
    from touchstone.shared.natsserver import free_port

    box = Mailbox(port=free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail = message_from_bytes(envelope.content, policy=policy.default)
            with box.lock:
                box.messages.append((tuple(envelope.rcpt_tos), mail))
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=box.host, port=box.port)
    controller.start()
    yield box
    controller.stop()
