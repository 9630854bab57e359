"""Fixtures of the results service's tests: staged attempt outputs as a provider leaves them,
a local webhook receiver, moto's S3 server over real HTTP, and the ledger bucket cleaned up."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from touchstone.results.adapters import KvLedger
from touchstone.shared import events as ev
from touchstone.shared.subjects import task_aggregate_id

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
    """One attempt's outputs in a provider's staging directory, and the event announcing them."""

    root: Path
    event: ev.TrainingFinished
    files: dict[str, bytes]


def stage_attempt(data_dir: Path, submission_id: str, task_id: str, attempt: int = 1) -> Staged:
    """Lay out ``artifacts/models/{s}/{t}/attempt-{n}/...`` and ``artifacts/logs/...`` as the
    agent's collect phase does, with ``file://`` URIs in a ``TrainingFinished``."""
    root = data_dir / "artifacts"
    out = root / "models" / submission_id / task_id / f"attempt-{attempt}"
    log_file = root / "logs" / submission_id / task_id / f"attempt-{attempt}.log"
    files = {
        "models/long.pkl": b"long-model-" + uuid.uuid4().bytes,
        "models/short.pkl": b"short-model-" + uuid.uuid4().bytes * 100,
        "metrics.json": json.dumps(METRICS).encode(),
        "report.json": b'{"ok": true}',
    }
    artifacts = {}
    for rel, body in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        artifacts[Path(rel).name] = path.resolve().as_uri()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_body = "".join(f"epoch {i}: loss {1 / (i + 1):.3f}\n" for i in range(200)).encode()
    log_file.write_bytes(log_body)
    files["log"] = log_body
    event = ev.TrainingFinished(
        aggregate_id=task_aggregate_id(submission_id, task_id),
        correlation_id=submission_id,
        submission_id=submission_id,
        task_id=task_id,
        attempt=attempt,
        metrics=METRICS,
        artifacts=artifacts,
        log_uri=log_file.resolve().as_uri(),
    )
    return Staged(root, event, files)


@pytest.fixture
def staged(tmp_path: Path) -> Staged:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    return stage_attempt(tmp_path / "provider", sid, "pi-60")


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
        await js.delete_key_value(KvLedger.bucket_name(subjects))
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
    return lambda submission_id, task_id, attempt=1: stage_attempt(tmp_path / "provider", submission_id, task_id,
                                                                   attempt)


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
